"""Downloads against a local HTTP server on 127.0.0.1: resume, checksum, safe extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from diffad.data import build_manifest, download_dataset
from diffad.data.download import download_dir, download_file, extract_archive, fetch_dataset
from diffad.errors import ConfigError, DatasetError, DownloadError


class _Server:
    """Serves ``files`` (URL path -> bytes); records every request's path and Range header."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def serve(self, path: str, body: bytes) -> tuple[str, str]:
        self.files[path] = body
        return self.base + path, hashlib.sha256(body).hexdigest()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def _tar(members: dict[str, bytes], *, mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _tar_with_link(name: str, target: str, kind: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("ok.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"ok"))
        link = tarfile.TarInfo(name)
        link.type, link.linkname = kind, target
        tf.addfile(link)
    return buf.getvalue()


def _tree_tar(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for path in sorted(root.iterdir()):
            tf.add(path, arcname=path.name)
    return buf.getvalue()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


PAYLOAD = {"bottle/readme.txt": b"hello " * 1000, "bottle/train/good/a.bin": bytes(range(256)) * 64}


def test_download_verify_and_extract(tmp_path, server):
    url, sha = server.serve("/data/archive.tar.gz", _tar(PAYLOAD, mode="w:gz"))
    root = tmp_path / "datasets" / "toy"
    fetch_dataset(root, url=url, sha256=sha, progress=False)
    assert (root / "bottle" / "readme.txt").read_bytes() == PAYLOAD["bottle/readme.txt"]
    assert (root / "bottle/train/good/a.bin").read_bytes() == PAYLOAD["bottle/train/good/a.bin"]
    # the archive and the temporary extraction folder are gone
    assert _leftovers(tmp_path / "datasets") == ["toy"]
    assert server.requests == [("/data/archive.tar.gz", None)]


def test_resume_sends_range_and_completes(tmp_path, server):
    body = _tar(PAYLOAD)
    url, sha = server.serve("/archive.tar", body)
    dest = download_dir(tmp_path / "toy") / "archive.tar"
    dest.parent.mkdir()
    half = len(body) // 2
    (dest.parent / "archive.tar.part").write_bytes(body[:half])
    download_file(url, dest, sha256=sha, progress=False)
    assert server.requests == [("/archive.tar", f"bytes={half}-")]
    assert dest.read_bytes() == body
    assert not (dest.parent / "archive.tar.part").exists()


def test_resume_restarts_when_server_ignores_range(tmp_path, server):
    body = _tar(PAYLOAD)
    url, sha = server.serve("/archive.tar", body)
    server.honour_range = False
    dest = tmp_path / "dl" / "archive.tar"
    dest.parent.mkdir()
    (dest.parent / "archive.tar.part").write_bytes(body[:100])
    download_file(url, dest, sha256=sha, progress=False)
    assert server.requests[0][1] == "bytes=100-"
    assert dest.read_bytes() == body


def test_stale_oversized_part_is_replaced(tmp_path, server):
    body = _tar(PAYLOAD)
    url, sha = server.serve("/archive.tar", body)
    dest = tmp_path / "dl" / "archive.tar"
    dest.parent.mkdir()
    (dest.parent / "archive.tar.part").write_bytes(b"x" * (len(body) + 10))
    download_file(url, dest, sha256=sha, progress=False)
    assert [r[1] for r in server.requests] == [f"bytes={len(body) + 10}-", None]
    assert dest.read_bytes() == body


def test_wrong_checksum_deletes_the_file_and_extracts_nothing(tmp_path, server):
    body = _tar(PAYLOAD)
    url, actual = server.serve("/archive.tar", body)
    wrong = "0" * 64
    root = tmp_path / "toy"
    with pytest.raises(DownloadError) as err:
        fetch_dataset(root, url=url, sha256=wrong, progress=False)
    message = str(err.value)
    assert "archive.tar" in message and wrong in message and actual in message
    assert not root.exists()
    assert not (download_dir(root) / "archive.tar").exists()
    assert not (download_dir(root) / "archive.tar.part").exists()


def test_http_error_is_a_download_error(tmp_path, server):
    with pytest.raises(DownloadError, match="404"):
        fetch_dataset(tmp_path / "toy", url=server.base + "/nothing.tar", sha256="0" * 64,
                      progress=False)


@pytest.mark.parametrize(
    ("member", "escaped"),
    [("../evil.txt", "evil.txt"), ("bottle/../../evil.txt", "evil.txt")],
)
def test_path_traversal_member_is_refused(tmp_path, server, member, escaped):
    url, sha = server.serve("/bad.tar", _tar({"bottle/ok.txt": b"ok", member: b"pwned"}))
    root = tmp_path / "area" / "toy"
    with pytest.raises(DownloadError, match=rf"'{member}'"):
        fetch_dataset(root, url=url, sha256=sha, progress=False)
    assert not (tmp_path / escaped).exists() and not (tmp_path / "area" / escaped).exists()
    assert not root.exists()
    assert _leftovers(tmp_path / "area") == ["toy.download"]  # only the verified archive


def test_absolute_member_is_refused(tmp_path):
    target = tmp_path / "abs_evil.txt"
    archive = tmp_path / "bad.tar"
    archive.write_bytes(_tar({"ok.txt": b"ok", str(target): b"pwned"}))
    with pytest.raises(DownloadError, match=rf"'{target}'"):
        extract_archive(archive, tmp_path / "out", progress=False)
    assert not target.exists() and not (tmp_path / "out").exists()
    assert _leftovers(tmp_path) == ["bad.tar"]


@pytest.mark.parametrize(
    ("name", "target", "kind"),
    [
        ("link", "../../outside", tarfile.SYMTYPE),
        ("sub/link", "/etc/passwd", tarfile.SYMTYPE),
        ("hard", "../outside", tarfile.LNKTYPE),
    ],
)
def test_links_pointing_outside_are_refused(tmp_path, name, target, kind):
    archive = tmp_path / "bad.tar"
    archive.write_bytes(_tar_with_link(name, target, kind))
    with pytest.raises(DownloadError, match=rf"'{name}'.*link"):
        extract_archive(archive, tmp_path / "out", progress=False)
    assert _leftovers(tmp_path) == ["bad.tar"]


def test_zip_traversal_is_refused_and_zip_extracts(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("ok.txt", b"ok")
        zf.writestr("../evil.txt", b"pwned")
    with pytest.raises(DownloadError, match=r"'\.\./evil\.txt'"):
        extract_archive(bad, tmp_path / "out", progress=False)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out").exists()
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("cat/ok.txt", b"ok")
    extract_archive(good, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "cat" / "ok.txt").read_bytes() == b"ok"


def test_file_url_and_tar_xz(tmp_path):
    body = _tar(PAYLOAD, mode="w:xz")
    source = tmp_path / "mirror" / "data.tar.xz"
    source.parent.mkdir()
    source.write_bytes(body)
    root = tmp_path / "toy"
    fetch_dataset(root, url=source.as_uri(), sha256=hashlib.sha256(body).hexdigest(),
                  progress=False)
    assert (root / "bottle" / "readme.txt").read_bytes() == PAYLOAD["bottle/readme.txt"]


def test_mvtec_ad_downloads_end_to_end(tmp_path, server, make_mvtec):
    tree = make_mvtec(tmp_path / "src", "bottle", defects={"broken_large": 2})
    url, sha = server.serve("/mvtec_anomaly_detection.tar.gz", _tree_tar(tree))
    root = tmp_path / "resources" / "mvtec_ad"
    cfg = {"kind": "mvtec_ad", "root": str(root), "categories": ["bottle"], "download": True,
           "url": url, "sha256": sha}
    download_dataset("mvtec_ad", cfg, progress=False)
    df = build_manifest("mvtec_ad", cfg, "bottle", progress=False)
    assert len(df) == 2 + 1 + 2 and df["label"].sum() == 2
    assert df["image_path"].str.startswith(str(root)).all()
    assert df.loc[df["label"] == 1, "mask_path"].str.contains("ground_truth").all()
    # a second run finds the folder and does not download again
    download_dataset("mvtec_ad", cfg, progress=False)
    build_manifest("mvtec_ad", cfg, "bottle", progress=False)
    assert len(server.requests) == 1
    assert _leftovers(root.parent) == ["mvtec_ad"]


def test_manifest_never_downloads(tmp_path, server, make_mvtec):
    tree = make_mvtec(tmp_path / "src", "bottle")
    url, sha = server.serve("/mvtec_anomaly_detection.tar.gz", _tree_tar(tree))
    root = tmp_path / "mvtec_ad"
    cfg = {"kind": "mvtec_ad", "root": str(root), "download": True, "url": url, "sha256": sha}
    with pytest.raises(DatasetError) as err:
        build_manifest("mvtec_ad", cfg, "bottle", progress=False)
    message = str(err.value)
    assert str(root) in message and "has not run" in message and "download_dataset" in message
    assert server.requests == [] and not root.exists()


def test_visa_downloads_end_to_end(tmp_path, server):
    from conftest import write_mask, write_png

    src = tmp_path / "src"
    write_png(src / "candle/Data/Images/Normal/0000.JPG")
    write_png(src / "candle/Data/Images/Normal/0001.JPG")
    write_png(src / "candle/Data/Images/Anomaly/000.JPG")
    write_mask(src / "candle/Data/Masks/Anomaly/000.png", on=1)
    (src / "split_csv").mkdir()
    (src / "split_csv/1cls.csv").write_text(
        "object,split,label,image,mask\n"
        "candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n"
        "candle,test,normal,candle/Data/Images/Normal/0001.JPG,\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,"
        "candle/Data/Masks/Anomaly/000.png\n")
    url, sha = server.serve("/VisA_20220922.tar", _tree_tar(src))
    root = tmp_path / "visa"
    cfg = {"kind": "visa", "root": str(root), "categories": ["candle"], "download": True,
           "url": url, "sha256": sha}
    download_dataset("visa", cfg, progress=False)
    df = build_manifest("visa", cfg, "candle", progress=False)
    assert df["label"].tolist() == [1, 0, 0]


def test_download_config_errors(tmp_path):
    root = tmp_path / "mvtec"
    cfg = {"kind": "mvtec_ad", "root": str(root), "download": True, "sha256": "abc"}
    with pytest.raises(ConfigError, match=r"mvtec\.sha256"):
        download_dataset("mvtec", cfg, progress=False)
    (tmp_path / "file").write_text("x")
    file_cfg = {"kind": "mvtec_ad", "root": str(tmp_path / "file")}
    with pytest.raises(DatasetError, match="is a file"):
        download_dataset("m", file_cfg, progress=False)
    with pytest.raises(DatasetError, match="is a file"):
        build_manifest("m", file_cfg, "bottle", progress=False)


def test_download_without_the_flag_says_how_to_get_the_data(tmp_path):
    root = tmp_path / "visa"
    with pytest.raises(DatasetError, match=rf"{root}.*download: true"):
        download_dataset("visa", {"kind": "visa", "root": str(root)}, progress=False)
    assert not root.exists()
