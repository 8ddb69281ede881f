#!/usr/bin/env python3
"""One-command set-up of CLIPascene (standard library only).

    python3 install.py              # environment, PyTorch, CLIPascene, weights, Inkscape extension
    python3 install.py --dev        # the same plus the test tools and the system packages tests use
    python3 install.py --cluster    # the same plus Ray, for jobs on a cluster (docs/deploy.md)
    python3 install.py --service    # also start the backend at login (systemd user unit)
    python3 install.py --uninstall  # remove what an earlier run installed, and nothing else

Every step says what it did; a failed step says what to do. Re-running is safe.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MIN_PYTHON = (3, 10)
#: Debian packages the test suite needs: cairo (the renderer tests' reference rasteriser and
#: CairoSVG), Chromium (the backend web page's screenshot test), Inkscape with Xvfb and GTK
#: (the extension's tests in the real application), and what PyPI's inkex needs to build
#: PyGObject.
DEV_APT_PACKAGES = [
    "libcairo2", "chromium", "inkscape", "xvfb", "xauth", "gir1.2-gtk-3.0", "python3-gi-cairo",
    "libgirepository1.0-dev", "libcairo2-dev", "pkg-config",
]


class InstallError(Exception):
    """A step failed; the message says what to do about it."""


def say(message: str) -> None:
    print(f"[install] {message}", flush=True)


def run(command: list[str], what: str, env: dict | None = None) -> None:
    say(f"{what}: {' '.join(command)}")
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise InstallError(f"{what} failed (exit {result.returncode}); see the output above.")


def check_python() -> None:
    if sys.version_info < MIN_PYTHON:
        raise InstallError(
            f"Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed; this is "
            f"{platform.python_version()}. Install a newer Python and run install.py with it."
        )
    say(f"Python {platform.python_version()} at {sys.executable}: ok")


def venv_python(prefix: Path) -> Path:
    if os.name == "nt":
        return prefix / "Scripts" / "python.exe"
    return prefix / "bin" / "python"


def create_venv(prefix: Path) -> Path:
    python = venv_python(prefix)
    if python.exists():
        say(f"virtual environment {prefix}: already there")
    else:
        say(f"creating the virtual environment {prefix}")
        try:
            venv.EnvBuilder(with_pip=True, upgrade_deps=False).create(prefix)
        except (OSError, subprocess.CalledProcessError) as error:
            raise InstallError(
                f"could not create {prefix} ({error}). On Debian/Ubuntu: "
                "sudo apt-get install python3-venv"
            ) from None
    return python


def have_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and subprocess.run(
        ["nvidia-smi", "-L"], capture_output=True
    ).returncode == 0


#: PyTorch's own index of CPU-only wheels: a fraction of the CUDA build's size.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_PACKAGES = ["torch>=2.1", "torchvision>=0.16"]


TORCH_BUILD_PROBE = (
    "import torch, torchvision; mps = getattr(torch.backends, 'mps', None); "
    "print(torch.__version__, torch.version.cuda or '-', int(bool(mps and mps.is_built())))"
)


def torch_build(python: Path) -> str | None:
    """Which PyTorch the environment has, in words ("2.5.1, CUDA 12.4 build"), or None."""
    probe = subprocess.run([str(python), "-c", TORCH_BUILD_PROBE], capture_output=True, text=True)
    if probe.returncode != 0:
        return None
    version, cuda, mps = probe.stdout.split()[-3:]
    if cuda != "-":
        build = f"CUDA {cuda} build"
        if not have_nvidia_gpu():
            build += (" (no NVIDIA GPU here, so it runs on the CPU; the CPU-only build from "
                      f"{TORCH_CPU_INDEX} is a fraction of its size)")
    elif mps == "1":
        build = "build with Apple MPS"
    else:
        build = "CPU-only build"
    return f"{version.split('+')[0]}, {build}"


def install_torch(python: Path) -> None:
    """PyTorch the right way for this machine: the CUDA build where an NVIDIA GPU is present
    (PyPI's Linux/Windows wheels), PyPI's wheels on macOS (they include Apple's MPS), and the
    CPU-only build elsewhere, falling back to PyPI's wheels when PyTorch's index is out of reach.
    Says which build the environment ends up with."""
    build = torch_build(python)
    if build is not None:
        say(f"PyTorch already installed: {build}")
        return
    _install_torch(python)
    say(f"PyTorch installed: {torch_build(python) or 'it does not import; see the output above'}")


def _install_torch(python: Path) -> None:
    pip = [str(python), "-m", "pip", "install"]
    if sys.platform == "darwin":
        run(pip + TORCH_PACKAGES, "installing PyTorch (with Apple MPS support)")
        return
    if have_nvidia_gpu():
        run(pip + TORCH_PACKAGES, "installing PyTorch with CUDA (an NVIDIA GPU is present)")
        return
    try:
        run(pip + ["--retries", "1", "--timeout", "30", "--index-url", TORCH_CPU_INDEX,
                   "--extra-index-url", "https://pypi.org/simple", *TORCH_PACKAGES],
            "installing PyTorch for the CPU (no NVIDIA GPU found)")
    except InstallError:
        say("PyTorch's CPU index was out of reach; installing PyPI's build (larger, also runs "
            "on the CPU)")
        run(pip + TORCH_PACKAGES, "installing PyTorch")


def install_project(python: Path, dev: bool, cluster: bool) -> None:
    # The test suite runs jobs on a local Ray runtime, so --dev brings the cluster extra too.
    extras = ["backend"] + (["dev"] if dev else []) + (["cluster"] if cluster or dev else [])
    run([str(python), "-m", "pip", "install", "-e", f"{ROOT}[{','.join(extras)}]"],
        "installing CLIPascene")


def install_system_packages(packages: list[str]) -> None:
    if not sys.platform.startswith("linux") or shutil.which("dpkg-query") is None:
        say(f"not a Debian-like system: make sure these are installed: {' '.join(packages)}")
        return
    missing = [
        name for name in packages
        if subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True,
                          text=True).stdout.strip() != "install ok installed"
    ]
    if not missing:
        say(f"system packages {' '.join(packages)}: already installed")
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and shutil.which("sudo") is None:
        raise InstallError(f"please install as root: apt-get install -y {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(sudo + ["apt-get", "update", "-q"], "updating the package lists", env)
    run(sudo + ["apt-get", "install", "-y", "-q", *missing], "installing system packages", env)


def default_data_dir() -> Path:
    """The platform's user data folder, as platformdirs gives it to the backend."""
    override = os.environ.get("CLIPASCENE_DATA_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "clipascene"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "clipascene"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "clipascene"


def install_extension(python: Path, profile: Path | None, link: bool, data_dir: Path) -> Path | None:
    """Put the extension into Inkscape's user extensions folder with the environment's own
    `clipascene inkscape install` (one implementation: clipascene_core/cli/inkscape_install.py), which
    records where the backend is so the extension can start it. None when Inkscape's profile
    folder was not found."""
    command = [str(python), "-m", "clipascene_core.cli", "inkscape"]
    where = ["--profile", str(profile)] if profile is not None else []
    found = subprocess.run([*command, "path", *where], capture_output=True, text=True)
    if found.returncode != 0:
        return None
    target = Path(found.stdout.strip().splitlines()[-1])
    run([*command, "install", *where, "--data-dir", str(data_dir), *(["--link"] if link else [])],
        "installing the Inkscape extension")
    return target


def check_inkscape_python() -> None:
    """The extension runs in the Python Inkscape starts: it needs lxml, and GTK for the picker.

    Only on Linux, where a distribution's Inkscape (/usr/bin/inkscape) runs the system's python3
    beside it: Inkscape's own bundled Python (Windows, macOS) is never run from here (on macOS
    1.4.3+ a launch constraint kills it when started from a terminal); it has what it needs."""
    if not sys.platform.startswith("linux"):
        return
    inkscape = shutil.which("inkscape")
    beside = Path(inkscape).resolve().parent / "python3" if inkscape else None
    python = (str(beside) if beside and beside.exists() else None) or shutil.which("python3") \
        or shutil.which("python")
    if python is None:
        say("WARNING: no python3 on PATH for Inkscape's extensions; install Python 3.")
        return
    probe = ("import warnings; warnings.simplefilter('ignore'); import lxml, gi; "
             "gi.require_version('Gtk', '3.0'); from gi.repository import Gtk")
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if result.returncode == 0:
        say(f"Inkscape's Python ({python}) has lxml and GTK: ok")
    else:
        say(f"WARNING: {python} cannot import lxml and GTK, which the extension's picker needs. "
            "On Debian/Ubuntu: sudo apt-get install python3-lxml python3-gi gir1.2-gtk-3.0")


def _core_module(path: str):
    """A standard-library-only module of clipascene_core ("models/netcheck"), loaded by its
    path: install.py runs before the project (and its dependencies) are installed."""
    import importlib.util

    name = path.replace("/", "_")
    spec = importlib.util.spec_from_file_location(f"_clipascene_{name}",
                                                  ROOT / "clipascene_core" / f"{path}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def weights_servers_unreachable(timeout: float = 5.0) -> str | None:
    """One quick request to each server the weights come from (clipascene_core.models.netcheck)."""
    netcheck = _core_module("models/netcheck")
    return netcheck.unreachable(netcheck.weights_servers(), timeout)


def download_weights(python: Path, data_dir: Path, models_dir: Path) -> bool:
    env = dict(os.environ, CLIPASCENE_DATA_DIR=str(data_dir))
    models = [str(python), "-m", "clipascene_core.cli", "models"]
    if subprocess.run([*models, "verify", "--quiet"], env=env, capture_output=True).returncode == 0:
        say(f"model weights: all present in {models_dir}")
        return True
    unreachable = weights_servers_unreachable()
    if unreachable:
        say(f"WARNING: the model weights cannot be downloaded: {unreachable} cannot be reached "
            "from this machine. Everything else is installed; when online, run "
            f"`{python.parent / 'clipascene'} models download`, or re-run install.py with "
            "--weights-dir pointing to a folder that has them.")
        return False
    result = subprocess.run([*models, "download"], env=env)
    if result.returncode != 0:
        say("WARNING: some weights could not be downloaded (see above). Everything else is "
            "installed; run `clipascene models download` later. Without U²-Net/LaMa the "
            "foreground split uses announced fallbacks; without CLIP nothing can be sketched.")
        return False
    return True


SERVICE_TEMPLATE = """[Unit]
Description=CLIPascene sketch backend
After=network.target

[Service]
ExecStart={backend} serve --data-dir {data_dir}
Restart=on-failure

[Install]
WantedBy=default.target
"""


def install_service(backend: Path, data_dir: Path) -> Path | None:
    if not sys.platform.startswith("linux") or shutil.which("systemctl") is None:
        say("--service: no systemd here; start the backend with `clipascene-backend serve` instead")
        return None
    unit = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user" \
        / "clipascene-backend.service"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(SERVICE_TEMPLATE.format(backend=backend, data_dir=data_dir))
    for command in (["daemon-reload"], ["enable", "--now", unit.name]):
        if subprocess.run(["systemctl", "--user", *command], capture_output=True).returncode != 0:
            say(f"WARNING: `systemctl --user {' '.join(command)}` failed; the unit is in {unit}")
            break
    else:
        say(f"backend service enabled: {unit}")
    return unit


def record_path(data_dir: Path) -> Path:
    return data_dir / "install-record.json"


def uninstall(data_dir: Path) -> int:
    """Remove what the recorded installation put in place, and nothing else."""
    path = record_path(data_dir)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        say(f"nothing to uninstall: no installation record in {data_dir}")
        return 0
    if record.get("service"):
        unit = Path(record["service"])
        subprocess.run(["systemctl", "--user", "disable", "--now", unit.name], capture_output=True)
        unit.unlink(missing_ok=True)
        say(f"removed the backend service {unit}")
    extension = record.get("extension")
    if extension:
        target = Path(extension)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        say(f"removed the Inkscape extension {target}")
    for key in ("models_dir", "venv"):
        if record.get(key) and record.get(f"{key}_created"):
            shutil.rmtree(record[key], ignore_errors=True)
            say(f"removed {record[key]}")
    if record.get("settings"):
        Path(record["settings"]).unlink(missing_ok=True)
    path.unlink()
    say("uninstalled. Your sketch jobs in the data folder were kept.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Set up CLIPascene on this machine.")
    parser.add_argument("--dev", action="store_true",
                        help="also install the test tools and the system packages tests need; "
                             "link the extension instead of copying it")
    parser.add_argument("--cluster", action="store_true",
                        help="also install Ray, to run jobs on a cluster (see docs/deploy.md)")
    parser.add_argument("--prefix", type=Path, default=ROOT / ".venv",
                        help="where to create the virtual environment (default: .venv here)")
    parser.add_argument("--python", type=Path, default=None,
                        help="install into this existing environment's Python instead of a new venv")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the backend's data folder (default: the user data folder)")
    parser.add_argument("--weights-dir", type=Path, default=None,
                        help="an existing folder with (or for) the model weights")
    parser.add_argument("--offline", action="store_true",
                        help="download nothing; the backend and the extension name what is missing")
    parser.add_argument("--inkscape-profile", type=Path, default=None,
                        help="Inkscape's profile folder (default: found from Inkscape)")
    parser.add_argument("--no-inkscape", action="store_true", help="do not install the extension")
    parser.add_argument("--service", action="store_true",
                        help="start the backend at login (systemd user unit, Linux)")
    parser.add_argument("--uninstall", action="store_true",
                        help="remove what an earlier run installed")
    args = parser.parse_args(argv)
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    if args.uninstall:
        return uninstall(data_dir)
    record: dict = {"data_dir": str(data_dir)}
    try:
        earlier = json.loads(record_path(data_dir).read_text())
    except (OSError, ValueError):
        earlier = {}
    try:
        check_python()
        if args.python is not None:
            python = args.python.expanduser().absolute()
            if not python.exists():
                raise InstallError(f"--python {python} does not exist.")
            say(f"using the existing environment of {python}")
        else:
            prefix = args.prefix.resolve()
            record["venv_created"] = not venv_python(prefix).exists()
            python = create_venv(prefix)
            record["venv"] = str(prefix)
        if args.dev:
            # Before the project: PyPI's inkex builds PyGObject against these headers.
            install_system_packages(DEV_APT_PACKAGES)
        install_torch(python)
        install_project(python, args.dev, args.cluster)
        data_dir.mkdir(parents=True, exist_ok=True)
        models_dir = (args.weights_dir.expanduser().resolve() if args.weights_dir
                      else data_dir / "models")
        if args.weights_dir:
            settings = data_dir / "settings.json"
            settings.write_text(json.dumps({"models_dir": str(models_dir)}, indent=2) + "\n")
            record["settings"] = str(settings)
        else:
            record["models_dir"] = str(models_dir)
            record["models_dir_created"] = not models_dir.exists()
        models_dir.mkdir(parents=True, exist_ok=True)
        if args.offline:
            say(f"offline: no weights downloaded; put them in {models_dir} "
                "(`clipascene models list` shows what is missing)")
        else:
            download_weights(python, data_dir, models_dir)
        backend = python.parent / ("clipascene-backend.exe" if os.name == "nt" else "clipascene-backend")
        if not args.no_inkscape:
            extension = install_extension(python, args.inkscape_profile, args.dev, data_dir)
            if extension is None:
                say("Inkscape was not found: install Inkscape 1.2 or newer, then run install.py "
                    "again to add the extension (or pass --inkscape-profile).")
            else:
                record["extension"] = str(extension)
                check_inkscape_python()
        if args.service:
            unit = install_service(backend, data_dir)
            if unit is not None:
                record["service"] = str(unit)
        # A re-run must not forget what the first run created.
        for key in ("venv_created", "models_dir_created"):
            record[key] = bool(record.get(key) or earlier.get(key))
        record_path(data_dir).write_text(json.dumps(record, indent=2) + "\n")
    except InstallError as error:
        say(f"FAILED: {error}")
        return 1
    bin_dir = python.parent
    say(f"done. In Inkscape: Extensions > CLIPascene > Sketch Image. From a terminal: "
        f"{bin_dir / 'clipascene'} sketch {ROOT / 'examples' / 'chelsea.jpg'} --out result/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
