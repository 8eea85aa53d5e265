"""`metricbench download`: fetch a benchmark's public archive, checked, resumable, extracted all or nothing.

CUB-200-2011 and Stanford Online Products have stable public archives; Cars196 and In-Shop do not, and
asking for them gives instructions instead. The only network access in metricbench is
:func:`download_dataset`, and only when called: no loader downloads anything implicitly.

Steps: a folder already extracted (it holds the marker file) is returned at once; otherwise the archive
is downloaded to ``DIR/<archive>.part`` (resuming with an HTTP Range request when a part is there),
its size and SHA-256 checked, renamed to ``DIR/<archive>``, extracted into a temporary folder inside
``DIR`` (refusing any member that would land outside it), marked complete, and only then renamed into
place, so ``DIR/<folder>`` is either absent or complete.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import BinaryIO

from metricbench.atomic import write_json
from metricbench.output_dir import make_out_dir

__all__ = ["ARCHIVES", "MANUAL", "MARKER", "Archive", "ManualDataset", "download_dataset", "download_summaries"]

MARKER = ".metricbench-download.json"  # written into the extracted folder last, before it is renamed into place
_CHUNK = 1 << 20
_TIMEOUT_S = 60
_FILTER_ERROR = getattr(tarfile, "FilterError", ())  # Python >= 3.10.12 / 3.11.4, with filter="data"


@dataclass(frozen=True)
class Archive:
    """A dataset's public archive.

    Attributes:
        title: What it holds, for help texts.
        url: Where to download it from.
        filename: The archive's file name in DIR.
        size: Its exact size in bytes.
        sha256: Its SHA-256, lowercase hex.
        format: ``"tar"`` (any compression tarfile reads) or ``"zip"``.
        folder: The top folder it extracts to: the dataset folder returned and named in the spec.
        extras: Other top-level members to keep, moved beside ``folder`` (CUB's ``attributes.txt``);
            anything else outside ``folder`` is dropped.
    """

    title: str
    url: str
    filename: str
    size: int
    sha256: str
    format: str
    folder: str
    extras: tuple[str, ...] = ()


@dataclass(frozen=True)
class ManualDataset:
    """A dataset with no archive metricbench can download: what it is and how to get it."""

    title: str
    instructions: str


ARCHIVES: Mapping[str, Archive] = MappingProxyType({
    # Size and SHA-256: tensorflow/datasets tensorflow_datasets/url_checksums/caltech_birds2011.txt
    # ("CUB_200_2011.tgz 1150585339 0c685df5..."), the same digest as pytorch/vision
    # torchvision/prototype/datasets/_builtin/cub200.py; projects that fetch this CaltechDATA URL quote the
    # same size and digest together with the MD5 97eceeb196236b17998738112f37df78 torchvision-style loaders check.
    "cub200": Archive(
        title="CUB-200-2011, 11,788 photos of 200 bird species",
        url="https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
        filename="CUB_200_2011.tgz",
        size=1_150_585_339,
        sha256="0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081",
        format="tar",
        folder="CUB_200_2011",
        extras=("attributes.txt",),
    ),
    # Size and SHA-256: tensorflow/datasets tensorflow_datasets/url_checksums/stanford_online_products.txt
    # ("ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip 3083860082 b04fa782..."), the same file
    # that this https URL serves from the same server path.
    "sop": Archive(
        title="Stanford Online Products, 120,053 photos of 22,634 products",
        url="https://ftp.cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",
        filename="Stanford_Online_Products.zip",
        size=3_083_860_082,
        sha256="b04fa78210e69fab050ce73939550e1cd0f96890bdd98ec9fee732c3b756ef48",
        format="zip",
        folder="Stanford_Online_Products",
    ),
})

MANUAL: Mapping[str, ManualDataset] = MappingProxyType({
    "cars196": ManualDataset(
        title="Cars196 (Stanford Cars), 16,185 photos of 196 car models",
        instructions="cars196 has no stable public archive: Stanford's original download of car_ims.tgz and "
        "cars_annos.mat is gone; the two files are now distributed through mirrors such as Kaggle "
        "(search for 'stanford cars car_ims cars_annos'). Get both, then lay them out as\n"
        "  DIR/cars_annos.mat\n"
        "  DIR/car_ims/000001.jpg ...      (tar xzf car_ims.tgz -C DIR)\n"
        "and use --dataset cars196:DIR",
    ),
    "inshop": ManualDataset(
        title="DeepFashion In-Shop, 52,712 photos of 7,982 items",
        instructions="inshop is distributed only through DeepFashion's Google Drive (In-shop Clothes Retrieval "
        "Benchmark, https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html), and its image "
        "archive needs a password that the authors give through a form. Download Img/img.zip and "
        "Eval/list_eval_partition.txt, then lay them out as\n"
        "  DIR/Eval/list_eval_partition.txt\n"
        "  DIR/Img/img/MEN/... DIR/Img/img/WOMEN/...      (unzip img.zip -d DIR/Img)\n"
        "and use --dataset inshop:DIR",
    ),
})


def download_summaries() -> dict[str, str]:
    """One line per name that `download_dataset` accepts: what it downloads and how big it is."""
    lines = {name: f"{a.title}: {a.filename}, {a.size / 1e9:.2f} GB" for name, a in ARCHIVES.items()}
    lines.update({name: f"{m.title}: no public archive, prints where to get it" for name, m in MANUAL.items()})
    return lines


def download_dataset(
    name: str,
    directory: str | os.PathLike,
    *,
    url: str | None = None,
    expected: tuple[int, str] | None = None,
    keep_archive: bool = True,
    progress: bool = True,
) -> Path:
    """Download and extract a benchmark dataset into `directory`, unless it is there already.

    Args:
        name: A key of :data:`ARCHIVES` (``"cub200"``, ``"sop"``). The names of :data:`MANUAL` raise with
            instructions.
        directory: Folder to download and extract into; created if missing.
        url: Download from this http(s) URL (a mirror) instead of the archive's own; the checks still apply.
        expected: ``(size in bytes, SHA-256 hex)`` of the archive at `url`, when it is not byte-identical to
            the original (a repacked mirror, tests); default: the registry's.
        keep_archive: Keep ``directory/<archive>`` after extracting it (a lost folder is then re-extracted
            without downloading); false deletes it once the folder is in place.
        progress: Show a tqdm progress bar (bytes) on stderr.

    Returns:
        The extracted dataset folder, ``directory/<archive.folder>``: the DIR of ``--dataset NAME:DIR``.

    Raises:
        ValueError: Unknown name, a name without a downloadable archive (the message says where to get it),
            bad `url`/`expected`, a download whose size or SHA-256 is not the expected one (the part file is
            deleted), or an archive with a member outside its folder or without the expected top folder.
        FileExistsError: ``directory/<folder>`` exists but was not completed by this function.
        ConnectionError: The network failed or the transfer stopped early; the part file is kept, and
            calling again resumes it.
    """
    if name in MANUAL:
        raise ValueError(MANUAL[name].instructions)
    if name not in ARCHIVES:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join([*ARCHIVES, *MANUAL])}")
    archive = ARCHIVES[name]
    url = archive.url if url is None else url
    if not re.match(r"https?://", url):
        raise ValueError(f"url must be an http:// or https:// URL, got {url!r}")
    size, sha256 = (archive.size, archive.sha256) if expected is None else expected
    if not (isinstance(size, int) and size > 0 and isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256)):
        raise ValueError(f"expected must be (size in bytes > 0, SHA-256 as 64 lowercase hex digits), got {expected!r}")
    directory = Path(directory).expanduser()
    folder = directory / archive.folder
    if (folder / MARKER).is_file():
        return folder
    if folder.exists():
        raise FileExistsError(f"{str(folder)!r} exists but was not completed by metricbench download; if you "
                              f"extracted it yourself, pass it as --dataset {name}:{folder}, else delete it")
    make_out_dir(directory, flag="directory", exist_ok=True)
    path = directory / archive.filename
    if path.exists():
        got = _file_digest(path)
        if (path.stat().st_size, got) != (size, sha256):
            raise ValueError(f"{str(path)!r} is not the expected archive: expected {size} bytes with SHA-256 "
                             f"{sha256}, got {path.stat().st_size} bytes with {got}; delete it to download again")
    else:
        part = path.with_name(path.name + ".part")
        _fetch(url, part, size, sha256, progress=progress)
        os.replace(part, path)
    _extract(path, archive, directory, {"name": name, "url": url, "size": size, "sha256": sha256})
    if not keep_archive:
        path.unlink()
    return folder


def _file_digest(path: Path, hasher=None) -> str:
    """SHA-256 of the file at `path`, or the digest of `hasher` once fed the file."""
    hasher = hasher or hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _open(url: str, start: int) -> http.client.HTTPResponse:
    """GET `url`, asking for the bytes from `start` on; a 416 (range not satisfiable) is retried whole."""
    headers = {"Range": f"bytes={start}-"} if start else {}
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            return _open(url, 0)
        raise


def _chunks(response: BinaryIO) -> Iterator[bytes]:
    while chunk := response.read(_CHUNK):
        yield chunk


def _fetch(url: str, part: Path, size: int, sha256: str, *, progress: bool) -> None:
    """Complete `part` from `url` and check it: on return it holds exactly `size` bytes with digest `sha256`."""
    from tqdm import tqdm

    start = part.stat().st_size if part.exists() else 0
    if start > size:
        start = 0
    hasher = hashlib.sha256()
    if start:
        _file_digest(part, hasher)  # the bytes already there, so the digest covers the whole file
    if start < size:
        done = start
        try:
            with _open(url, start) as response:
                content_range = response.headers.get("Content-Range", "")
                if start and not (response.status == 206 and content_range.startswith(f"bytes {start}-")):
                    start, done, hasher = 0, 0, hashlib.sha256()  # the server sent the whole file: start again
                length = response.headers.get("Content-Length")
                if length is not None and start + int(length) != size:
                    part.unlink(missing_ok=True)
                    raise ValueError(f"{url} serves {start + int(length)} bytes, expected {size}")
                with open(part, "ab" if start else "wb") as file, tqdm(
                        total=size, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=part.stem,
                        disable=not progress) as bar:
                    for chunk in _chunks(response):
                        if done + len(chunk) > size:
                            file.close()
                            part.unlink()
                            raise ValueError(f"{url} sent more than the expected {size} bytes")
                        hasher.update(chunk)
                        file.write(chunk)
                        done += len(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
            raise ConnectionError(f"downloading {url} failed after {done} of {size} bytes ({err}); "
                                  f"run the same command again to resume from {str(part)!r}") from err
        if done < size:
            raise ConnectionError(f"downloading {url} stopped after {done} of {size} bytes; "
                                  f"run the same command again to resume from {str(part)!r}")
    got = hasher.hexdigest()
    if got != sha256:
        part.unlink()
        raise ValueError(f"{url}: expected SHA-256 {sha256}, got {got} ({size} bytes); the download was deleted")


def _check_member(name: str, path: Path) -> None:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise ValueError(f"archive {str(path)!r} has a member {name!r} outside the folder it extracts to; "
                         "refusing to extract it")


def _extract_into(path: Path, archive: Archive, target: Path) -> None:
    """Extract all of `path` into `target`, having checked every member first."""
    if archive.format == "zip":
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                _check_member(info.filename, path)
            zf.extractall(target)
        return
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member.name, path)
            if not (member.isfile() or member.isdir()):
                raise ValueError(f"archive {str(path)!r} has a member {member.name!r} that is not a plain file or "
                                 "folder (a link or device); refusing to extract it")
        # filter="data" (Python >= 3.10.12 / 3.11.4) is a second guard: no absolute paths, no special modes.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tar.extractall(target, members=members, **safe)
        except _FILTER_ERROR as err:
            raise ValueError(f"archive {str(path)!r}: {err}; refusing to extract it") from err


def _extract(path: Path, archive: Archive, directory: Path, marker: dict) -> None:
    """Extract `path` beside itself, then rename its top folder (marked complete) into `directory`."""
    temp = Path(tempfile.mkdtemp(prefix=f".{archive.folder}.extracting-", dir=directory))
    try:
        _extract_into(path, archive, temp)
        top = temp / archive.folder
        if not top.is_dir():
            found = ", ".join(sorted(p.name for p in temp.iterdir())) or "nothing"
            raise ValueError(f"archive {str(path)!r} should extract to a folder {archive.folder!r}, got {found}")
        write_json(marker, top / MARKER)
        for extra in archive.extras:
            if (temp / extra).exists() and not (directory / extra).exists():
                os.rename(temp / extra, directory / extra)
        os.rename(top, directory / archive.folder)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
