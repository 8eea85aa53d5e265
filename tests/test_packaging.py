"""The built wheel installs `metricbench.losses`/`metricbench.eval` and nothing under bare names."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
API_PROBE = (
    "import metricbench, metricbench.losses as L, metricbench.eval as E, metricbench.cli;"
    "print(metricbench.losses.__file__);"
    "print(sorted(L.__all__)); print(sorted(E.__all__)); print(L.available_losses())"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
                   check=True, capture_output=True)
    (path,) = out.glob("metricbench-*.whl")
    return path


def test_wheel_maps_losses_and_eval_under_metricbench(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("metricbench-")}
    assert tops == {"metricbench"}, tops
    assert "metricbench/losses/base.py" in names and "metricbench/eval/knn.py" in names
    assert not any(n.startswith(("losses/", "eval/", "tests/", "experiments/", "metricbench/experiments/")) for n in names)


def test_installed_wheel_exposes_the_same_api_as_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    # The wheel's copy comes first on the path; run from a folder outside the repository.
    installed = subprocess.run([sys.executable, "-c", API_PROBE], cwd=outside, capture_output=True, text=True, check=True,
                               env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout.splitlines()
    editable = subprocess.run([sys.executable, "-c", API_PROBE], cwd=outside, capture_output=True, text=True,
                              check=True).stdout.splitlines()
    assert installed[0].startswith(str(target)) and editable[0].startswith(str(REPO / "losses"))
    assert installed[1:] == editable[1:]
