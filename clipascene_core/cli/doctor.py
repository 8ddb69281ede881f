"""`clipascene doctor`: one report of everything a bug report needs (text, or --json).

Versions (this project, PyTorch and its build, Python, open_clip), the devices and the
precision `auto` chooses on each, every weights file (verified, present, corrupt or missing)
and the models folder, Inkscape (its version, the Python it runs extensions with, whether
and which version of the extension is installed in its profile), the local daemon (running,
its version and API version) and the data folder's free space. Inkscape's own bundled Python
is never run: it is named, not started.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from ..models.clip import DEFAULT_CLIP_MODEL, clip_weights_present
from ..models.downloads import verify
from ..models.precision import PrecisionChoice, cpu_model, planned_choice
from ..models.weights import WEIGHTS
from ..paths import data_dir, models_dir
from ..version import __version__
from . import inkscape_install

DEFAULT_SERVER = "http://127.0.0.1:8765"


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_report() -> dict:
    import torch

    mps = getattr(torch.backends, "mps", None)
    if torch.version.cuda:
        build = f"CUDA {torch.version.cuda}"
    elif getattr(torch.version, "hip", None):
        build = f"ROCm {torch.version.hip}"
    elif mps is not None and mps.is_built():
        build = "MPS"
    else:
        build = "CPU-only"
    return {"version": torch.__version__, "build": build}


def devices_report() -> list[dict]:
    """Each compute device with the precision `--precision auto` resolves to on it."""
    import torch

    names = ["cpu"] + [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    devices = []
    for name in names:
        device = torch.device(name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
        choice = planned_choice("auto", device, DEFAULT_CLIP_MODEL)
        devices.append({"device": name, "name": label or platform.machine(),
                        "auto_precision": choice["precision"] or "not measured yet",
                        "precision": choice})
    return devices


def _precision_text(choice: dict) -> str:
    if choice["precision"] is None:
        return f"auto: {choice['reason']}"
    return PrecisionChoice(**choice).describe()


def weights_report(folder: Path) -> dict[str, str]:
    """{name: "verified" (checksum matches) | "present" (no checksum to hold it to) |
    "corrupt" | "missing"}."""
    states = {"clip": "present" if clip_weights_present(folder) else "missing"}
    for name, entry in WEIGHTS.items():
        state = verify(entry, folder)
        states[name] = "verified" if state == "present" and entry.md5 else state
    return states


def _inkscape_python(executable: Path) -> dict:
    """The Python Inkscape runs extensions with. On Linux a distribution's Inkscape runs the
    system's python3 (asked for its version here); Windows' and macOS' Inkscape bundle their
    own, which is only looked for, never started."""
    folder = executable.resolve().parent
    if sys.platform.startswith("linux"):
        beside = folder / "python3"
        python = str(beside) if beside.exists() else shutil.which("python3")
        if python is None:
            return {"path": None, "version": None}
        try:
            answer = subprocess.run([python, "--version"], capture_output=True, text=True, timeout=30)
            version = answer.stdout.strip().removeprefix("Python ") or None
        except (OSError, subprocess.TimeoutExpired):
            version = None
        return {"path": python, "version": version}
    candidates = [folder / "python.exe", folder.parent / "Resources" / "bin" / "python3"]
    bundled = next((path for path in candidates if path.exists()), None)
    return {"path": str(bundled) if bundled else None, "version": None, "bundled": True}


def inkscape_report(profile: Path | None = None) -> dict:
    found = shutil.which("inkscape")
    report: dict = {"path": found, "version": None, "python": None}
    if found:
        try:
            answer = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=60)
            match = re.search(r"Inkscape (\S+)", answer.stdout)
            report["version"] = match.group(1) if match else None
        except (OSError, subprocess.TimeoutExpired):
            pass
        report["python"] = _inkscape_python(Path(found))
    extensions = inkscape_install.extensions_dir(profile)
    report["extensions_dir"] = str(extensions) if extensions else None
    version = inkscape_install.installed_version(extensions) if extensions else None
    report["extension"] = {"installed": version is not None, "version": version,
                           "path": str(extensions / inkscape_install.FOLDER) if version else None}
    return report


def daemon_report(server: str) -> dict:
    request = urllib.request.Request(server.rstrip("/") + "/v1/health")
    token = os.environ.get("CLIPASCENE_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            health = json.loads(response.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as error:
        return {"url": server, "running": False, "problem": str(getattr(error, "reason", error))}
    return {"url": server, "running": True, "version": health.get("version"),
            "api_version": health.get("api_version"), "ok": health.get("ok"),
            "problems": health.get("problems", [])}


def _free_bytes(folder: Path) -> int | None:
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return None


def report(server: str = DEFAULT_SERVER, profile: Path | None = None) -> dict:
    models = models_dir()
    data = data_dir()
    return {
        "clipascene": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable,
                   "platform": platform.platform()},
        "torch": torch_report(),
        "open_clip": _package_version("open_clip_torch"),
        "devices": devices_report(),
        "models_dir": str(models),
        "weights": weights_report(models),
        "inkscape": inkscape_report(profile),
        "daemon": daemon_report(server),
        "data_dir": {"path": str(data), "free_bytes": _free_bytes(data)},
    }


def render(facts: dict) -> str:
    """The report as text, one fact a line."""
    torch = facts["torch"]
    lines = [f"clipascene {facts['clipascene']}",
             f"Python {facts['python']['version']} ({facts['python']['executable']}) on "
             f"{facts['python']['platform']}",
             f"PyTorch {torch['version']} ({torch['build']} build), open_clip {facts['open_clip']}"]
    lines += [f"device {item['device']} ({item['name']}): precision {_precision_text(item['precision'])}"
              for item in facts["devices"]]
    lines.append(f"models folder: {facts['models_dir']}")
    lines += [f"  {name}: {state}" for name, state in facts["weights"].items()]
    ink = facts["inkscape"]
    if ink["path"]:
        python = ink["python"] or {}
        lines.append(f"Inkscape {ink['version'] or '(version unknown)'} at {ink['path']}; "
                     f"extensions run with {python.get('path') or 'no Python found'}"
                     + (f" (Python {python['version']})" if python.get("version") else ""))
    else:
        lines.append("Inkscape: not found on PATH")
    extension = ink["extension"]
    lines.append(f"extension: {extension['version']} in {extension['path']}" if extension["installed"]
                 else f"extension: not installed in {ink['extensions_dir'] or '(no Inkscape profile)'}"
                      " (clipascene inkscape install)")
    daemon = facts["daemon"]
    lines.append(f"daemon at {daemon['url']}: running, version {daemon['version']}, API "
                 f"{daemon['api_version']}" if daemon["running"] else
                 f"daemon at {daemon['url']}: not running ({daemon['problem']})")
    free = facts["data_dir"]["free_bytes"]
    lines.append(f"data folder: {facts['data_dir']['path']}, "
                 + (f"{free / 2**30:.1f} GB free" if free is not None else "free space unknown"))
    return "\n".join(lines)


def add_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("doctor", help="report versions, devices, weights, Inkscape and "
                                                 "the daemon: what a bug report needs")
    command.add_argument("--json", action="store_true", help="the report as JSON")
    command.add_argument("--server", default=DEFAULT_SERVER, help="the daemon's address")
    command.add_argument("--profile", type=Path, default=None,
                         help="Inkscape's profile folder (default: $INKSCAPE_PROFILE_DIR, else "
                              "the one Inkscape uses)")


def run(args: argparse.Namespace) -> int:
    facts = report(args.server, args.profile)
    print(json.dumps(facts, indent=2) if args.json else render(facts))
    return 0
