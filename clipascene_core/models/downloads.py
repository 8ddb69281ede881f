"""Dependable downloads of model weights: resumable, verified, retried, space-checked.

Files are fetched to `NAME.part` beside their destination; an interrupted transfer resumes
from where it stopped (HTTP Range); the checksum is verified before the file is renamed into
place, so a weights file that exists is always complete and correct.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .weights import WeightsFile

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
#: Free space kept beyond the file itself.
SPACE_MARGIN = 64 << 20


class DownloadError(RuntimeError):
    """A download failed for good; the message says why and what to do."""


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(entry: WeightsFile, folder: Path) -> str:
    """'present' (checksum matches), 'missing', or 'corrupt'."""
    path = entry.path(folder)
    if not path.is_file():
        return "missing"
    if entry.md5 is None:
        return "present"
    return "present" if file_md5(path) == entry.md5 else "corrupt"


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + SPACE_MARGIN:
        raise DownloadError(
            f"not enough free space in {folder}: {needed / 2**20:.0f} MB needed, "
            f"{free / 2**20:.0f} MB free. Free some space or choose another folder with --weights-dir.")


def download(
    entry: WeightsFile,
    folder: Path,
    *,
    url: str | None = None,
    retries: int = 4,
    timeout: float = 60.0,
    backoff: float = 1.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Fetch `entry` into `folder` (resuming a previous partial download) and verify it.

    on_progress(bytes_done, bytes_total) is called as data arrives. Returns the file's path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = entry.path(folder)
    if verify(entry, folder) == "present":
        return target
    partial = target.with_name(target.name + ".part")
    _check_space(folder, max(entry.size - (partial.stat().st_size if partial.exists() else 0), 0))
    source = url or entry.url
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        try:
            _fetch(source, partial, timeout, on_progress)
            break
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            last_error = error
            logger.warning("download of %s interrupted (%s); attempt %d of %d", entry.name, error,
                           attempt + 1, retries + 1)
            time.sleep(backoff * (2**attempt))
    else:
        raise DownloadError(
            f"could not download {entry.filename} from {source} ({last_error}); the partial file "
            f"is kept and the next try resumes it. Check the internet connection, or put the file "
            f"in {folder} by hand.")
    if entry.md5 is not None and file_md5(partial) != entry.md5:
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"{entry.filename} arrived corrupted (checksum mismatch) and was deleted; try again.")
    os.replace(partial, target)
    return target


def _fetch(url: str, partial: Path, timeout: float,
           on_progress: Callable[[int, int], None] | None) -> None:
    done = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "clipascene"})
    if done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # already complete: the server has nothing after `done`
            return
        raise
    with response:
        resumed = response.status == 206
        if not resumed:
            done = 0  # the server ignored Range: start again
        total = done + int(response.headers.get("Content-Length") or 0)
        with open(partial, "ab" if resumed else "wb") as stream:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                stream.write(block)
                done += len(block)
                if on_progress is not None:
                    on_progress(done, total)
        if total and done < total:
            raise OSError(f"connection closed after {done} of {total} bytes")
