"""The backend's log: standard error and `backend.log` in the data folder.

Writing the log must never be what stops the service. A plain `logging.FileHandler` lets a
failure to reopen its file (a data folder turned read-only, no descriptor left) escape into
the code that logged: it killed the worker thread, or the event loop in the middle of
accepting a connection. Here every failure to write `backend.log` is reported once on
standard error, the next line tries the file again, and its return is reported too.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SafeFileHandler(logging.FileHandler):
    """A log file whose failures never reach the code that logs."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8")
        self.failing = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.stream is None:  # closed (by a logging set-up) or dropped after a failure
                self.stream = self._open()
        except Exception:  # noqa: BLE001  (reported once by handleError)
            self.handleError(record)
            return
        logging.StreamHandler.emit(self, record)  # its own failures go to handleError
        if self.failing and self.stream is not None:
            self.failing = False
            _say(f"backend: {self.baseFilename} is written again.")

    def handleError(self, record: logging.LogRecord) -> None:
        """Drop the stream (the next line opens the file again); say so once."""
        try:
            error = sys.exc_info()[1]
            stream, self.stream = self.stream, None
            if stream is not None:
                try:
                    stream.close()
                except Exception:  # noqa: BLE001
                    pass
            if not self.failing:
                self.failing = True
                _say(f"backend: cannot write {self.baseFilename} ({error}); log lines go to "
                     "standard error only until it can be written again.")
        except Exception:  # noqa: BLE001  (never raise from logging)
            pass


class AcceptTrouble(logging.Filter):
    """When descriptors run out, asyncio logs every failed accept of a burst (thousands a
    second, each with a traceback): keep one a minute, on one line."""

    EVERY_S = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.last = -self.EVERY_S

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("socket.accept() out of system resource"):
            return True
        now = time.monotonic()
        if now - self.last < self.EVERY_S:
            return False
        self.last = now
        error = record.exc_info[1] if record.exc_info else None
        record.msg, record.args, record.exc_info = (
            "cannot accept connections (%s): they wait or are refused until descriptors are "
            "free again", (error,), None)
        return True


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except Exception:  # noqa: BLE001  (no standard error either: nothing more to do)
        pass


def setup_logging(data_dir: Path, level: str) -> None:
    """Log to standard error and `data_dir/backend.log`, at `level` (DEBUG … ERROR).

    uvicorn is then run with `log_config=None`: its own set-up would close these handlers.
    Its access lines go to standard output, as uvicorn's set-up would send them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr),
                                       SafeFileHandler(data_dir / "backend.log")]
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=handlers,
                        format=FORMAT, force=True)
    logging.getLogger("asyncio").addFilter(AcceptTrouble())
    access = logging.getLogger("uvicorn.access")
    access.propagate = False
    access.handlers = [logging.StreamHandler(sys.stdout)]
    access.handlers[0].setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
