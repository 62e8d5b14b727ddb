"""Download a dataset archive, verify its checksum and extract it safely.

The steps of :func:`fetch_dataset`, each safe to interrupt and rerun:

1. download ``url`` (``http(s)://`` with requests, or ``file://``) into
   ``<root>.download/<filename>.part``; if a ``.part`` file is there, ask
   for the rest with an HTTP ``Range`` request and append (a server that
   ignores Range answers 200 and the download restarts from zero);
2. rename the finished file to ``<filename>`` and check its SHA-256; on a
   mismatch delete it and raise :class:`DownloadError` with both digests;
3. list every archive member (tar, tar.gz, tar.xz, tar.bz2, zip) and refuse
   the whole archive, before writing anything, if one member would land
   outside the target: absolute names, ``..`` components, symbolic or hard
   links pointing outside, device files;
4. extract into a temporary folder beside ``root`` and rename it onto
   ``root``, so ``root`` appears complete or not at all.

A dataset kind calls :func:`ensure_downloaded` from its download hook,
which ``diffad.data.download_dataset`` runs once per dataset, and
:func:`require_downloaded` from its per-category manifest builder, which
never downloads and says how to get the data when it is missing.

Example::

    >>> fetch_dataset("resources/datasets/mvtec_ad", url=MVTEC_URL,
    ...               sha256=MVTEC_SHA256)                      # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import requests
from tqdm import tqdm

from diffad.data.options import flag_of, is_missing_or_empty
from diffad.errors import ConfigError, DatasetError, DownloadError

_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
# tarfile.FilterError exists from Python 3.11.4 / 3.12 on; () catches nothing.
_FILTER_ERROR: Any = getattr(tarfile, "FilterError", ())


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 digest of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_dir(root: str | os.PathLike) -> Path:
    """Where the archive of ``root`` is downloaded: ``<root>.download``."""
    return Path(os.fspath(root).rstrip("/\\") + ".download")


def archive_name(url: str) -> str:
    """The file name a download of ``url`` is saved under."""
    name = posixpath.basename(unquote(urlparse(url).path))
    return name if name not in ("", ".", "..") else "download"


def _bar(total: int | None, initial: int, desc: str, progress: bool) -> tqdm:
    # A byte-level bar on a terminal only: in a job's log file it would be one
    # line of carriage returns; the log gets the start and end lines instead.
    return tqdm(
        total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
        unit_divisor=1024, disable=not progress or not sys.stderr.isatty(),
    )


def _fetch_file_url(url: str, part: Path, progress: bool) -> None:
    src = Path(url2pathname(urlparse(url).path))
    if not src.is_file():
        raise DownloadError(f"cannot download {url}: {src} does not exist")
    size = src.stat().st_size
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:
        offset = 0
    with open(src, "rb") as fin, open(part, "ab" if offset else "wb") as fout:
        fin.seek(offset)
        with _bar(size, offset, part.name, progress) as bar:
            for block in iter(lambda: fin.read(_CHUNK), b""):
                fout.write(block)
                bar.update(len(block))


def _resumed_at(resp: requests.Response, offset: int) -> bool:
    """True if ``resp`` is a 206 answer continuing at byte ``offset``."""
    if resp.status_code != 206:
        return False
    match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
    return match is not None and int(match.group(1)) == offset


def _fetch_http(url: str, part: Path, progress: bool) -> None:
    for _attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            resp = requests.get(url, headers=headers, stream=True, timeout=(30, 300))
        except requests.RequestException as exc:
            raise DownloadError(f"cannot download {url}: {exc}") from exc
        with resp:
            if offset and (resp.status_code == 416
                           or (resp.status_code == 206 and not _resumed_at(resp, offset))):
                # The partial file is not a prefix of this resource: start over.
                part.unlink()
                continue
            if offset and _resumed_at(resp, offset):
                mode = "ab"
            elif resp.status_code == 200:
                mode, offset = "wb", 0  # Range ignored: the body is the whole file.
            else:
                raise DownloadError(f"cannot download {url}: HTTP {resp.status_code} {resp.reason}")
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else None
            try:
                with open(part, mode) as fh, _bar(total, offset, part.name, progress) as bar:
                    for chunk in resp.iter_content(_CHUNK):
                        fh.write(chunk)
                        bar.update(len(chunk))
            except requests.RequestException as exc:
                raise DownloadError(
                    f"download of {url} interrupted: {exc}; the partial file {part} is kept "
                    f"and the next run resumes it"
                ) from exc
        if total is not None and part.stat().st_size != total:
            raise DownloadError(
                f"download of {url} incomplete: {part} has {part.stat().st_size} of {total} "
                f"bytes; rerun to resume"
            )
        return
    raise DownloadError(f"cannot download {url}: the server refused the range request twice")


def download_file(
    url: str, dest: str | os.PathLike, *, sha256: str, progress: bool = True
) -> Path:
    """Download ``url`` to ``dest`` (via ``dest.part``, resumable) and verify its SHA-256.

    An existing ``dest`` with the right digest is reused; one with a wrong
    digest is deleted and downloaded again.

    Raises:
        DownloadError: network/HTTP failure, or the downloaded file's digest is
            not ``sha256`` (the file is deleted; the message names both digests).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256.lower()
    if dest.exists():
        if sha256_file(dest) == expected:
            return dest
        dest.unlink()
    part = dest.with_name(dest.name + ".part")
    scheme = urlparse(url).scheme.lower()
    if scheme == "file":
        _fetch_file_url(url, part, progress)
    elif scheme in ("http", "https"):
        _fetch_http(url, part, progress)
    else:
        raise DownloadError(f"cannot download {url}: unsupported URL scheme {scheme!r}")
    os.replace(part, dest)
    actual = sha256_file(dest)
    if actual != expected:
        dest.unlink()
        raise DownloadError(
            f"checksum mismatch for {dest} (from {url}): expected sha256 {expected}, "
            f"got {actual}; the file was deleted"
        )
    return dest


def _is_absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) is not None


def _escapes(name: str) -> bool:
    """True if archive path ``name`` is absolute or leaves its folder through ``..``."""
    if _is_absolute(name):
        return True
    parts = re.split(r"[/\\]+", name)
    return ".." in parts


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> None:
    def refuse(why: str) -> DownloadError:
        return DownloadError(
            f"unsafe member {member.name!r} in {archive}: {why}; nothing extracted"
        )

    if _escapes(member.name):
        raise refuse("its path is absolute or contains '..'")
    if member.issym():
        link = member.linkname
        target = posixpath.normpath(posixpath.join(posixpath.dirname(member.name), link))
        if _is_absolute(link) or target == ".." or target.startswith("../"):
            raise refuse(f"symbolic link to {link!r} points outside the target folder")
    elif member.islnk():
        target = posixpath.normpath(member.linkname)
        if _escapes(member.linkname) or target == ".." or target.startswith("../"):
            raise refuse(f"hard link to {member.linkname!r} points outside the target folder")
    elif not (member.isfile() or member.isdir()):
        raise refuse("device files and FIFOs are not allowed")


def _counted(members: Iterable[Any], bar: tqdm) -> Iterator[Any]:
    for m in members:
        yield m
        bar.update(1)


def _extract_into(archive: Path, dest: Path, progress: bool) -> None:
    desc = f"extracting {archive.name}"
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                if _escapes(info.filename):
                    raise DownloadError(
                        f"unsafe member {info.filename!r} in {archive}: its path is absolute or "
                        f"contains '..'; nothing extracted"
                    )
            with tqdm(total=len(infos), desc=desc, unit="file",
                      disable=not progress or not sys.stderr.isatty()) as bar:
                for info in _counted(infos, bar):
                    zf.extract(info, dest)
        return
    try:
        tf = tarfile.open(archive, "r:*")
    except tarfile.TarError as exc:
        raise DownloadError(f"{archive} is not a tar or zip archive: {exc}") from exc
    with tf:
        members = tf.getmembers()
        for member in members:
            _check_tar_member(member, archive)
        extra: dict[str, Any] = {}
        if hasattr(tarfile, "data_filter"):
            # Second line of defence: the stdlib filter also resolves links on disk.
            extra["filter"] = "data"
        with tqdm(total=len(members), desc=desc, unit="file",
                  disable=not progress or not sys.stderr.isatty()) as bar:
            try:
                tf.extractall(dest, members=_counted(members, bar), **extra)
            except _FILTER_ERROR as exc:
                raise DownloadError(f"unsafe member in {archive}: {exc}") from exc


def extract_archive(
    archive: str | os.PathLike, target: str | os.PathLike, *, progress: bool = True
) -> Path:
    """Extract ``archive`` so that its top level becomes the folder ``target``.

    Every member is checked before anything is written; extraction goes to a
    temporary folder beside ``target`` which is then renamed onto it.

    Raises:
        DownloadError: an unsafe member (named in the message), or not an archive.
        DatasetError: ``target`` exists and is not empty.
    """
    archive, target = Path(archive), Path(target)
    if target.exists() and not is_missing_or_empty(os.fspath(target)):
        raise DatasetError(f"cannot extract {archive} into {target}: the folder is not empty")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract-", dir=target.parent))
    try:
        _extract_into(archive, tmp, progress)
        if target.exists():
            target.rmdir()
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def fetch_dataset(
    root: str | os.PathLike,
    *,
    url: str,
    sha256: str,
    progress: bool = True,
    keep_archive: bool = False,
) -> Path:
    """Download, verify and extract the archive at ``url`` into the folder ``root``.

    The archive lives in ``<root>.download/`` and is deleted after a
    successful extraction unless ``keep_archive``.
    """
    ddir = download_dir(root)
    archive = download_file(url, ddir / archive_name(url), sha256=sha256, progress=progress)
    extract_archive(archive, root, progress=progress)
    if not keep_archive:
        archive.unlink()
        if not any(ddir.iterdir()):
            ddir.rmdir()
    return Path(root)


def _source(name: str, cfg: dict[str, Any], url: str, sha256: str) -> tuple[str, str]:
    """The configured ``url``/``sha256`` overrides, else the kind's defaults, checked."""
    url = cfg.get("url", url)
    sha256 = cfg.get("sha256", sha256)
    if not isinstance(url, str) or not url:
        raise ConfigError(f"datasets.{name}.url must be a URL string, got {url!r}")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise ConfigError(f"datasets.{name}.sha256 must be 64 hex digits, got {sha256!r}")
    return url, sha256


def _present(root: str) -> bool:
    """True if the dataset folder ``root`` holds something; raise if it is a file."""
    if is_missing_or_empty(root):
        return False
    if not os.path.isdir(root):
        raise DatasetError(f"dataset root {root} is a file, not a folder")
    return True


def ensure_downloaded(
    name: str,
    cfg: dict[str, Any],
    root: str,
    *,
    url: str,
    sha256: str,
    manual: str,
    progress: bool = True,
) -> None:
    """Make sure the dataset folder ``root`` exists, downloading it if the config asks to.

    ``cfg`` keys: ``download`` (bool, default false), ``url`` and ``sha256``
    (override the defaults ``url``/``sha256``), ``keep_archive`` (bool).
    ``manual`` tells how to get the data by hand (used in the error message).
    Does nothing when ``root`` already holds files.

    Raises:
        DatasetError: ``root`` is missing and ``download`` is false.
        ConfigError: a malformed ``url``/``sha256`` override.
        DownloadError: see :func:`download_file` and :func:`extract_archive`.
    """
    if _present(root):
        return
    url, sha256 = _source(name, cfg, url, sha256)
    if not flag_of(name, cfg, "download"):
        raise DatasetError(
            f"dataset folder {root} not found. Set `download: true` under datasets.{name} "
            f"to fetch it from {url}, or {manual}"
        )
    fetch_dataset(
        root, url=url, sha256=sha256, progress=progress,
        keep_archive=flag_of(name, cfg, "keep_archive"),
    )


def require_downloaded(
    name: str, cfg: dict[str, Any], root: str, *, url: str, manual: str
) -> None:
    """Raise unless the dataset folder ``root`` is there; never downloads.

    What the per-category manifests of a downloadable kind call: the
    download runs once per dataset (:func:`ensure_downloaded`, through
    ``diffad.data.download_dataset``), before them.

    Raises:
        DatasetError: ``root`` is missing or a file; the message says how to get it.
    """
    if _present(root):
        return
    url = cfg.get("url", url)
    if flag_of(name, cfg, "download"):
        raise DatasetError(
            f"dataset folder {root} not found. datasets.{name} has `download: true`, but the "
            f"download from {url} has not run: it runs once per dataset, before the "
            f"manifests (diffad.data.download_dataset); or {manual}"
        )
    raise DatasetError(
        f"dataset folder {root} not found. Set `download: true` under datasets.{name} "
        f"to fetch it from {url}, or {manual}"
    )
