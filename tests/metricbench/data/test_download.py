"""Tests for download_dataset and `metricbench download`, against a real HTTP server on 127.0.0.1 only."""

import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import threading
import urllib.parse
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from metricbench.cli import main
from metricbench.data.download import ARCHIVES, MANUAL, MARKER, download_dataset

# ---------------------------------------------------------------- a local server with Range support


class _Handler(BaseHTTPRequestHandler):
    """Serves `server.files`; honours `Range: bytes=N-` unless `server.honor_range` is false; logs every GET."""

    def do_GET(self):  # noqa: N802 (the http.server name)
        server = self.server
        data = server.files.get(self.path)
        entry = {"path": self.path, "range": self.headers.get("Range"), "status": 404, "sent": 0}
        server.log.append(entry)
        if data is None:
            self.send_error(404)
            return
        start, match = 0, re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and server.honor_range:
            start = int(match[1])
            if start >= len(data):
                entry["status"] = 416
                self.send_error(416)
                return
        entry["status"] = 206 if match and server.honor_range else 200
        self.send_response(entry["status"])
        self.send_header("Content-Length", str(len(data) - start))
        if entry["status"] == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        body = data[start:] if server.cut_after is None else data[start:start + server.cut_after]
        try:
            self.wfile.write(body)  # with cut_after, fewer bytes than Content-Length, then the connection closes
        except ConnectionError:  # the client hung up early (a size it refused)
            return
        entry["sent"] = len(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.log, httpd.honor_range, httpd.cut_after = {}, [], True, None
    httpd.url = lambda path: f"http://127.0.0.1:{httpd.server_address[1]}{path}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _local_network_only(monkeypatch):
    """Any attempt to reach a host other than 127.0.0.1 fails the test."""
    real = urllib.request.urlopen

    def urlopen(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        assert urllib.parse.urlsplit(url).hostname == "127.0.0.1", f"a test tried to contact {url}"
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)


# ---------------------------------------------------------------- fixture archives

_FILES = {
    "images.txt": b"1 001.Black_footed_Albatross/a.jpg\n2 002.Laysan_Albatross/b.jpg\n",
    "classes.txt": b"1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n",
    # incompressible bytes, so that a partial download is a real fraction of the archive
    "images/001.Black_footed_Albatross/a.jpg": np.random.default_rng(0).bytes(150_000),
    "images/002.Laysan_Albatross/b.jpg": np.random.default_rng(1).bytes(150_000),
}


def _tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _archive(name: str) -> bytes:
    """A small stand-in for the real archive of `name`: its top folder and file names, fake contents."""
    folder = ARCHIVES[name].folder
    members = {f"{folder}/{path}": data for path, data in _FILES.items()}
    if name == "cub200":
        return _tgz({**members, "attributes.txt": b"1 has_bill_shape::curved\n"})
    return _zip(members)


def _expected(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


def _serve(server, name: str, data: bytes | None = None) -> tuple[str, bytes]:
    data = _archive(name) if data is None else data
    path = f"/mirror/{ARCHIVES[name].filename}"
    server.files[path] = data
    return server.url(path), data


def _leftovers(directory: Path) -> list[str]:
    """Part files and temporary extraction folders left in `directory`."""
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part") or ".extracting-" in p.name)


# ---------------------------------------------------------------- downloading


@pytest.mark.parametrize("name", ["cub200", "sop"])
def test_download_extracts_the_folder_and_marks_it_complete(server, tmp_path, name):
    url, data = _serve(server, name)
    folder = download_dataset(name, tmp_path / "data", url=url, expected=_expected(data), progress=False)
    assert folder == tmp_path / "data" / ARCHIVES[name].folder
    for path, content in _FILES.items():
        assert (folder / path).read_bytes() == content
    assert (folder / MARKER).is_file()
    assert (tmp_path / "data" / ARCHIVES[name].filename).read_bytes() == data  # kept by default
    assert _leftovers(tmp_path / "data") == []
    if name == "cub200":
        assert (tmp_path / "data" / "attributes.txt").is_file()  # beside the folder, as `tar xzf` puts it
    assert [(e["range"], e["status"], e["sent"]) for e in server.log] == [(None, 200, len(data))]


def test_resume_requests_only_the_missing_bytes(server, tmp_path):
    url, data = _serve(server, "cub200")
    have = len(data) * 2 // 5
    (tmp_path / "CUB_200_2011.tgz.part").write_bytes(data[:have])
    folder = download_dataset("cub200", tmp_path, url=url, expected=_expected(data), progress=False)
    assert (folder / "classes.txt").read_bytes() == _FILES["classes.txt"]
    assert [(e["range"], e["status"], e["sent"]) for e in server.log] == [(f"bytes={have}-", 206, len(data) - have)]


def test_an_interrupted_download_keeps_its_part_and_resumes(server, tmp_path):
    url, data = _serve(server, "sop")
    server.cut_after = 100_000
    with pytest.raises(ConnectionError, match="stopped after 100000 of .* run the same command again to resume"):
        download_dataset("sop", tmp_path, url=url, expected=_expected(data), progress=False)
    assert (tmp_path / "Stanford_Online_Products.zip.part").read_bytes() == data[:100_000]
    assert not (tmp_path / "Stanford_Online_Products").exists()
    server.cut_after = None
    download_dataset("sop", tmp_path, url=url, expected=_expected(data), progress=False)
    assert server.log[-1]["range"] == "bytes=100000-" and server.log[-1]["sent"] == len(data) - 100_000
    assert (tmp_path / "Stanford_Online_Products.zip").read_bytes() == data


def test_a_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    url, data = _serve(server, "cub200")
    server.honor_range = False
    (tmp_path / "CUB_200_2011.tgz.part").write_bytes(b"x" * 1000)  # wrong bytes: kept, they would fail the check
    download_dataset("cub200", tmp_path, url=url, expected=_expected(data), progress=False)
    assert [(e["range"], e["status"], e["sent"]) for e in server.log] == [("bytes=1000-", 200, len(data))]
    assert (tmp_path / "CUB_200_2011.tgz").read_bytes() == data


def test_a_complete_part_is_checked_without_a_request(server, tmp_path):
    url, data = _serve(server, "cub200")
    (tmp_path / "CUB_200_2011.tgz.part").write_bytes(data)
    download_dataset("cub200", tmp_path, url=url, expected=_expected(data), progress=False)
    assert server.log == [] and (tmp_path / "CUB_200_2011" / MARKER).is_file()


@pytest.mark.parametrize("wrong", ["sha256", "larger", "smaller"])
def test_a_wrong_archive_is_deleted_and_nothing_is_extracted(server, tmp_path, wrong):
    url, data = _serve(server, "cub200")
    size, digest = _expected(data)
    expected = {"sha256": (size, "0" * 64), "larger": (size + 1, digest), "smaller": (size - 1, digest)}[wrong]
    message = {"sha256": f"{re.escape(url)}: expected SHA-256 0{{64}}, got {digest}",
               "larger": f"{re.escape(url)} serves {size} bytes, expected {size + 1}",
               "smaller": f"{re.escape(url)} serves {size} bytes, expected {size - 1}"}[wrong]
    with pytest.raises(ValueError, match=message):
        download_dataset("cub200", tmp_path, url=url, expected=expected, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_wrong_resumed_part_is_deleted(server, tmp_path):
    url, data = _serve(server, "cub200")
    (tmp_path / "CUB_200_2011.tgz.part").write_bytes(b"x" * 1000)  # the server honours Range: the digest catches it
    with pytest.raises(ValueError, match="expected SHA-256"):
        download_dataset("cub200", tmp_path, url=url, expected=_expected(data), progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, member", [("cub200", "../evil.txt"), ("cub200", "/tmp/evil.txt"),
                                          ("sop", "Stanford_Online_Products/../../evil.txt")])
def test_a_member_outside_the_folder_is_refused(server, tmp_path, name, member):
    members = {f"{ARCHIVES[name].folder}/images.txt": b"1 a.jpg\n", member: b"gotcha"}
    url, data = _serve(server, name, _tgz(members) if name == "cub200" else _zip(members))
    with pytest.raises(ValueError, match=f"has a member '{re.escape(member)}' outside the folder"):
        download_dataset(name, tmp_path / "data", url=url, expected=_expected(data), progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "data" / ARCHIVES[name].folder).exists()
    assert _leftovers(tmp_path / "data") == []


def test_a_link_member_is_refused(server, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("CUB_200_2011/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    url, data = _serve(server, "cub200", buffer.getvalue())
    with pytest.raises(ValueError, match="'CUB_200_2011/passwd' that is not a plain file or folder"):
        download_dataset("cub200", tmp_path, url=url, expected=_expected(data), progress=False)
    assert not (tmp_path / "CUB_200_2011").exists() and _leftovers(tmp_path) == []


def test_an_archive_without_the_top_folder_is_refused(server, tmp_path):
    url, data = _serve(server, "sop", _zip({"Other/x.txt": b"x"}))
    with pytest.raises(ValueError, match="should extract to a folder 'Stanford_Online_Products', got Other"):
        download_dataset("sop", tmp_path, url=url, expected=_expected(data), progress=False)
    assert _leftovers(tmp_path) == [] and not (tmp_path / "Stanford_Online_Products").exists()


# ---------------------------------------------------------------- already there


def test_an_extracted_folder_is_returned_without_network(server, tmp_path):
    url, data = _serve(server, "cub200")
    folder = download_dataset("cub200", tmp_path, url=url, expected=_expected(data), progress=False)
    server.log.clear()
    assert download_dataset("cub200", tmp_path, progress=False) == folder  # the registry's real URL: never asked
    assert server.log == []


def test_a_kept_archive_is_reextracted_without_network(server, tmp_path):
    url, data = _serve(server, "cub200")
    folder = download_dataset("cub200", tmp_path, url=url, expected=_expected(data), progress=False)
    (folder / MARKER).unlink()
    os.rename(folder, tmp_path / "gone")
    server.log.clear()
    download_dataset("cub200", tmp_path, url=url, expected=_expected(data), keep_archive=False, progress=False)
    assert server.log == [] and (folder / MARKER).is_file() and not (tmp_path / "CUB_200_2011.tgz").exists()


def test_a_kept_archive_that_does_not_match_is_refused(server, tmp_path):
    url, data = _serve(server, "cub200")
    (tmp_path / "CUB_200_2011.tgz").write_bytes(data[:-1])
    with pytest.raises(ValueError, match=f"CUB_200_2011.tgz' is not the expected archive: expected {len(data)} "
                       f"bytes .* got {len(data) - 1} bytes .* delete it to download again"):
        download_dataset("cub200", tmp_path, url=url, expected=_expected(data), progress=False)
    assert server.log == [] and (tmp_path / "CUB_200_2011.tgz").exists()  # the user's file is left alone


def test_a_folder_not_made_by_download_is_refused(server, tmp_path):
    url, data = _serve(server, "cub200")
    (tmp_path / "CUB_200_2011").mkdir()
    with pytest.raises(FileExistsError, match="exists but was not completed by metricbench download; .* "
                       f"--dataset cub200:{re.escape(str(tmp_path))}/CUB_200_2011, else delete it"):
        download_dataset("cub200", tmp_path, url=url, expected=_expected(data), progress=False)
    assert server.log == []


# ---------------------------------------------------------------- names and arguments


@pytest.mark.parametrize("name, layout", [("cars196", ["DIR/cars_annos.mat", "DIR/car_ims/", "Kaggle"]),
                                          ("inshop", ["DIR/Eval/list_eval_partition.txt", "DIR/Img/img/",
                                                      "password"])])
def test_names_without_an_archive_say_where_to_get_them(tmp_path, capsys, name, layout):
    with pytest.raises(ValueError) as err:
        download_dataset(name, tmp_path)
    assert all(text in str(err.value) for text in [*layout, f"--dataset {name}:DIR"])
    assert main(["download", name, str(tmp_path)]) == 2
    assert str(err.value) in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'cub'; available: cub200, sop, cars196, inshop"):
        download_dataset("cub", tmp_path)
    with pytest.raises(ValueError, match="url must be an http:// or https:// URL, got 'ftp://x/y.zip'"):
        download_dataset("sop", tmp_path, url="ftp://x/y.zip")
    with pytest.raises(ValueError, match=r"expected must be \(size in bytes > 0, SHA-256 .*got \(10, 'abc'\)"):
        download_dataset("sop", tmp_path, url="http://127.0.0.1/x.zip", expected=(10, "abc"))


def test_registry_entries_are_well_formed():
    for archive in ARCHIVES.values():
        assert re.fullmatch(r"[0-9a-f]{64}", archive.sha256) and archive.size > 10**9
        assert archive.format == ("zip" if archive.filename.endswith(".zip") else "tar")
        assert archive.url.startswith("https://") and archive.url.endswith("/" + archive.filename)
    assert not set(ARCHIVES) & set(MANUAL)


# ---------------------------------------------------------------- the command line


def test_cli_downloads_and_prints_the_spec(server, tmp_path):
    url, data = _serve(server, "cub200")
    size, digest = _expected(data)
    command = [sys.executable, "-m", "metricbench", "download", "cub200", str(tmp_path / "data"), "--url", url,
               "--expect", f"{size}:{digest}", "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"--dataset cub200:{tmp_path / 'data' / 'CUB_200_2011'}\n" in result.stdout
    assert (tmp_path / "data" / "CUB_200_2011" / "classes.txt").is_file()
    result = subprocess.run([*command, "--delete-archive"], capture_output=True, text=True)  # already there
    assert result.returncode == 0 and len(server.log) == 1


def test_cli_errors(server, tmp_path, capsys):
    url, data = _serve(server, "cub200")
    assert main(["download", "cub200", str(tmp_path), "--expect", "10:" + "0" * 64]) == 2
    assert "--expect gives the size and SHA-256 of a --url mirror's archive; give --url too" in capsys.readouterr().err
    assert main(["download", "cub200", str(tmp_path), "--url", url, "--expect", "big"]) == 2
    assert "--expect must be SIZE:SHA256 (bytes, 64 hex digits), got 'big'" in capsys.readouterr().err
    server.files.clear()  # a 404 is the network's answer: exit 1, one line
    assert main(["download", "cub200", str(tmp_path), "--url", url, "--expect", "10:" + "0" * 64]) == 1
    assert "HTTP Error 404" in capsys.readouterr().err


def test_cli_help_lists_every_name_with_its_size():
    result = subprocess.run([sys.executable, "-m", "metricbench", "download", "--help"], capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "100"})
    assert result.returncode == 0 and result.stdout.startswith("usage: metricbench download")
    for text in ["cub200", "1.15 GB", "sop", "3.08 GB", "cars196", "inshop", "no public archive"]:
        assert text in result.stdout
