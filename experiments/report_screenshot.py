"""The README's picture of a benchmark report: the top of report.html, rendered by headless Chromium.

    .venv/bin/metricbench bench quick --aggregate-only --out /tmp/quick-report
    .venv/bin/python experiments/report_screenshot.py /tmp/quick-report/report.html --out docs/report.png

Needs Debian's `chromium` package (`apt-get install --no-install-recommends chromium`). The screenshot is taken
1280 px wide, cut to `--height` px and stored as a 256-colour PNG, scaled down until it is under `--max-kb`.
`chromium()` is also what the report's tests render with.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from metricbench.atomic import atomic_write

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                  "--disable-extensions", "--hide-scrollbars", "--mute-audio")


def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium with `args` and a throw-away profile; returns its exit status and output.

    Chromium starts in a new session, and its whole process group is killed when it returns or times out, so
    no renderer or helper outlives the call.

    Raises:
        FileNotFoundError: no `chromium` on PATH.
        subprocess.TimeoutExpired: it ran longer than `timeout` seconds (and was killed).
    """
    executable = shutil.which("chromium")
    if executable is None:
        raise FileNotFoundError("chromium not found on PATH; install Debian's `chromium` package")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        argv = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # the group outlives its leader while any helper lives
            except ProcessLookupError:
                pass
            if process.returncode is None:
                process.communicate()
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def screenshot(page: Path, png: Path, *, width: int = 1280, height: int = 2000, timeout: float = 120) -> None:
    """Render `page` (an HTML file) in a `width` x `height` window into `png`.

    Raises:
        RuntimeError: Chromium failed or wrote no screenshot (its stderr is in the message).
    """
    done = chromium(f"--screenshot={png}", f"--window-size={width},{height}", Path(page).resolve().as_uri(),
                    timeout=timeout)
    if done.returncode != 0 or not Path(png).is_file():
        raise RuntimeError(f"chromium exited with {done.returncode} and no screenshot: {done.stderr[-2000:]}")


def small_png(image: Image.Image, max_bytes: int) -> bytes:
    """`image` as a 256-colour PNG, scaled down by steps of 10% until it takes at most `max_bytes`."""
    image = image.convert("RGB")
    while True:
        buffer = io.BytesIO()
        image.quantize(256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= max_bytes or image.width < 320:
            return buffer.getvalue()
        image = image.resize((round(image.width * 0.9), round(image.height * 0.9)), Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a benchmark's report.html")
    parser.add_argument("--out", type=Path, default=Path("docs/report.png"))
    parser.add_argument("--height", type=int, default=1400, help="px of the page's top to keep")
    parser.add_argument("--max-kb", type=int, default=380)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temp:
        shot = Path(temp) / "shot.png"
        screenshot(args.report, shot, height=args.height)
        with Image.open(shot) as image:
            png = small_png(image.crop((0, 0, image.width, min(image.height, args.height))), args.max_kb * 1024)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, png)
    print(f"{args.out}: {len(png) / 1024:.0f} KB")


if __name__ == "__main__":
    main()
