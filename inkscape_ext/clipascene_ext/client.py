"""HTTP client of the CLIPascene backend, standard library only (Inkscape's Python has no
`requests` guaranteed), and starting the backend when it is installed but not running."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from . import API_VERSION, __version__

DEFAULT_SERVER = "http://127.0.0.1:8765"
#: Written by `clipascene inkscape install` (and install.py): {"backend": "/path/to/clipascene-backend",
#: "data_dir": …, "version": …}. A copy from the Extension Manager's zip has none.
BACKEND_RECORD = Path(__file__).with_name("backend.json")
START_TIMEOUT_S = 60.0


class BackendError(Exception):
    """Anything that went wrong talking to the backend; the message is for the user."""


class Backend:
    """The daemon at `server` (e.g. http://127.0.0.1:8765)."""

    def __init__(self, server: str = DEFAULT_SERVER, token: str | None = None,
                 timeout: float = 15.0) -> None:
        self.server = (server or DEFAULT_SERVER).rstrip("/")
        self.token = token if token is not None else os.environ.get("CLIPASCENE_TOKEN")
        self.timeout = timeout

    # --- transport ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict | None = None) -> bytes:
        request = urllib.request.Request(self.server + path, data=body, method=method,
                                         headers=dict(headers or {}))
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            try:
                detail = json.loads(error.read().decode("utf-8")).get("detail", error.reason)
            except (ValueError, AttributeError):
                detail = error.reason
            raise BackendError(f"the CLIPascene backend refused the request: {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise BackendError(f"cannot reach the CLIPascene backend at {self.server} ({reason}).") from None

    def _json(self, method: str, path: str, **kwargs) -> dict:
        return json.loads(self._request(method, path, **kwargs).decode("utf-8"))

    # --- API -----------------------------------------------------------------------------------

    def health(self) -> dict:
        return self._json("GET", "/v1/health")

    def submit(self, image: bytes, filename: str, params: dict, mask: bytes | None = None) -> dict:
        """Upload an image with job parameters -> {"id", "status", "cached"}.

        `mask`: a PNG of the image's size, white (or opaque) where the object is: the part
        `mask` of the upload, used instead of the computed foreground mask.
        """
        boundary = uuid.uuid4().hex
        parts = [(f'--{boundary}\r\nContent-Disposition: form-data; name="params"\r\n\r\n'
                  f"{json.dumps(params)}\r\n").encode()]
        files = [("image", filename, image)] + ([("mask", "mask.png", mask)] if mask is not None else [])
        for name, file_name, data in files:
            parts += [(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                       f'filename="{_quote(file_name)}"\r\n'
                       "Content-Type: application/octet-stream\r\n\r\n").encode(), data, b"\r\n"]
        parts.append(f"--{boundary}--\r\n".encode())
        return self._json("POST", "/v1/jobs", body=b"".join(parts),
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{_id(job_id)}")

    def jobs_of_image(self, image: bytes) -> list[dict]:
        """Every job sketched of these image bytes (any settings, any mask), newest first."""
        query = urllib.parse.urlencode({"image_sha256": hashlib.sha256(image).hexdigest()})
        return json.loads(self._request("GET", f"/v1/jobs?{query}").decode("utf-8"))

    def matrix(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{_id(job_id)}/matrix")

    def manifest_json(self, job_id: str) -> dict:
        """The run's manifest (once a cell is done): the preset that ran and its step counts,
        and every finished cell's regions with their stroke counts."""
        return self._json("GET", f"/v1/jobs/{_id(job_id)}/manifest.json")

    def cell_svg(self, job_id: str, row: int, column: int, part: str = "combined") -> bytes:
        query = urllib.parse.urlencode({"part": part})
        return self._request("GET", f"/v1/jobs/{_id(job_id)}/cells/{int(row)}/{int(column)}.svg?{query}")

    def cell_png(self, job_id: str, row: int, column: int, part: str = "combined",
                 size: int = 160) -> bytes:
        query = urllib.parse.urlencode({"part": part, "size": int(size)})
        return self._request("GET", f"/v1/jobs/{_id(job_id)}/cells/{int(row)}/{int(column)}.png?{query}")

    def mask_png(self, job_id: str) -> bytes:
        """The object mask the job used (white = foreground), in the image's pixel frame."""
        return self._request("GET", f"/v1/jobs/{_id(job_id)}/mask.png")

    def events(self, job_id: str, timeout: float = 60.0):
        """The job's server-sent events as (kind, data) pairs ("progress", "cell", then "done",
        "failed" or "cancelled"), until the stream ends. Raises BackendError when it cannot
        be opened; a stream silent for `timeout` s (keep-alives count) raises OSError."""
        request = urllib.request.Request(self.server + f"/v1/jobs/{_id(job_id)}/events",
                                         headers={"Accept": "text/event-stream"})
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except (urllib.error.URLError, OSError) as error:
            raise BackendError(f"no event stream from {self.server} "
                               f"({getattr(error, 'reason', error)}).") from None
        with response:
            kind, data = "message", []
            for raw in response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith(":"):  # a keep-alive comment
                    continue
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    yield kind, json.loads("\n".join(data))
                    kind, data = "message", []

    def cancel(self, job_id: str) -> dict:
        return self._json("DELETE", f"/v1/jobs/{_id(job_id)}")

    # --- the daemon ----------------------------------------------------------------------------

    def ensure_running(self, start: bool = True) -> dict:
        """Health of the backend, starting it first when it is installed here but not running.

        Raises BackendError with one message saying how to start it otherwise.
        """
        try:
            return checked(self.health(), self.server)
        except BackendError as unreachable:
            if str(unreachable).startswith(MISMATCH):
                raise
            command = installed_backend()
            if not start or not self._is_local():
                raise BackendError(f"{unreachable} Start it with `clipascene-backend serve`, or "
                                   "check the server address in the dialog; `clipascene doctor` "
                                   "on its machine reports its state.") from None
            if command is None:
                raise BackendError(how_to_get_the_daemon()) from None
        port = urllib.parse.urlsplit(self.server).port or 80
        arguments = [*command, "serve", "--port", str(port)]
        data_dir = installed_data_dir()
        if data_dir is not None:  # where install.py put the weights and the jobs
            arguments += ["--data-dir", str(data_dir)]
        log = _start_log()
        spawn_detached(arguments, log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                health = self.health()
            except BackendError:
                continue
            return checked(health, self.server)
        raise BackendError(f"the CLIPascene backend did not start within {START_TIMEOUT_S:.0f} s; "
                           f"see {log}. `clipascene doctor` shows what that machine has.")

    def _is_local(self) -> bool:
        host = urllib.parse.urlsplit(self.server).hostname or ""
        return host in ("127.0.0.1", "localhost", "::1")


def _install_record() -> dict:
    try:
        record = json.loads(BACKEND_RECORD.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def installed_data_dir() -> Path | None:
    """The data folder install.py set up (weights, jobs), if it recorded one."""
    folder = _install_record().get("data_dir")
    return Path(folder) if isinstance(folder, str) and folder else None


def installed_backend() -> list[str] | None:
    """The command that starts the backend: as `clipascene inkscape install` recorded it, else
    `clipascene-backend` on PATH or where pipx and uv put commands (Inkscape started from a
    desktop menu may not have that folder on its PATH); None when there is none."""
    executable = _install_record().get("backend")
    if executable and Path(executable).exists():
        return [executable]
    name = "clipascene-backend.exe" if sys.platform == "win32" else "clipascene-backend"
    found = shutil.which(name) or shutil.which(name, path=str(Path.home() / ".local" / "bin"))
    return [found] if found else None


#: How every version mismatch message starts (ensure_running does not retry those).
MISMATCH = "CLIPascene versions do not match:"


def version_problem(health: dict, server: str = DEFAULT_SERVER) -> str | None:
    """One sentence saying which to update when the daemon speaks another API than this
    extension, else None."""
    theirs = health.get("api_version", 0)  # daemons before the API version had none
    if theirs == API_VERSION:
        return None
    daemon = f"the daemon at {server} (version {health.get('version', '?')}, API {theirs})"
    ours = f"this Inkscape extension (version {__version__}, API {API_VERSION})"
    if theirs < API_VERSION:
        return (f"{MISMATCH} {daemon} is older than {ours}; update the daemon (`pipx upgrade "
                "clipascene`, or `python3 install.py` in its repository) and restart it "
                "(`clipascene-backend stop`).")
    return (f"{MISMATCH} {ours} is older than {daemon}; update the extension (`clipascene "
            "inkscape install`, or the new zip in Extensions > Manage Extensions) and restart "
            "Inkscape.")


def checked(health: dict, server: str) -> dict:
    """`health`, or BackendError when the daemon's API version is not this extension's."""
    problem = version_problem(health, server)
    if problem:
        raise BackendError(problem)
    return health


def how_to_get_the_daemon(platform: str = sys.platform) -> str:
    """The one dialog when no daemon is installed here: what it is and how to get it on this OS."""
    if platform == "win32":
        steps = ('in PowerShell: `py -m pip install --user pipx`, then `py -m pipx install '
                 '"clipascene[backend]"`, then `clipascene inkscape install`')
    else:
        steps = ('in a terminal: `pipx install "clipascene[backend]"` (or `uv tool install '
                 '"clipascene[backend]"`), then `clipascene inkscape install`'
                 + ("; with Homebrew, `brew install pipx` first" if platform == "darwin" else ""))
    return ("CLIPascene's sketches are made by its daemon, a separate program on this computer, "
            f"and it is not installed. Install it once, {steps}; or, from the project's "
            "repository, `python3 install.py`. Then run Sketch Image again.")


#: Run by a short-lived go-between: it starts the command in a session of its own and exits at
#: once, so the caller waits for it (nothing is left running under the caller's `Popen`,
#: which Python would report as a ResourceWarning) and the command outlives the caller.
_LAUNCHER = ("import subprocess, sys\n"
             "with open(sys.argv[1], 'ab') as log:\n"
             "    subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,"
             " start_new_session=True, close_fds=True)\n")


def spawn_detached(arguments: list[str], log: Path, cwd: Path | None = None,
                   env: dict | None = None) -> None:
    """Start `arguments` detached from this process (it keeps running after this one exits,
    in its own session), its output appended to `log`; returns once it is started.

    Raises BackendError when it cannot be started.
    """
    try:
        subprocess.run([sys.executable, "-W", "ignore", "-c", _LAUNCHER, str(log), *arguments],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, cwd=cwd, env=env, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as error:
        raise BackendError(f"could not start {Path(arguments[0]).name} ({error}); "
                           f"see {log}.") from None


def _start_log() -> Path:
    folder = Path(os.environ.get("TMPDIR", "/tmp")) if sys.platform != "win32" else Path.home()
    return folder / "clipascene-backend-start.log"


def _id(job_id: str) -> str:
    if not (len(job_id) == 16 and all(char in "0123456789abcdef" for char in job_id)):
        raise BackendError(f"{job_id!r} is not a CLIPascene job id.")
    return job_id


def _quote(filename: str) -> str:
    return filename.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")
