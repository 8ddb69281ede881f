"""Writing result files so that a reader never sees a half-written one."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    The file gets the mode any new file gets (0666 less the umask), not mkstemp's private 0600:
    results are for sharing, opening in other programs, serving."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.part"
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_png(path: str | Path, image) -> None:
    """Encode a PIL image as PNG and write it atomically."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(path: str | Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def remove_previous_results(folder: str | Path, keep: tuple[Path, ...] = ()) -> int:
    """Delete an earlier run's result files from `folder`, so that a new run into it leaves no
    stale cells; other files, and those in `keep` (e.g. the input image), stay. Returns how
    many files were deleted."""
    kept = {path.resolve() for path in keep}
    from .records import OutputFolder

    removed = 0
    for pattern in OutputFolder.PATTERNS:
        for path in Path(folder).glob(pattern):
            if path.is_file() and path.resolve() not in kept:
                path.unlink()
                removed += 1
    return removed
