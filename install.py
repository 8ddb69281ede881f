#!/usr/bin/env python3
"""One-command set-up of CLIPascene (standard library only).

    python3 install.py          # virtual environment + PyTorch + CLIPascene
    python3 install.py --dev    # the same plus the test tools and the system packages tests use

Every step says what it did; a failed step says what to do. Re-running is safe.
"""

from __future__ import annotations

import argparse
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


def install_torch(python: Path) -> None:
    probe = subprocess.run(
        [str(python), "-c", "import torch, torchvision; print(torch.__version__)"],
        capture_output=True, text=True,
    )
    if probe.returncode == 0:
        say(f"PyTorch {probe.stdout.strip()}: already installed")
        return
    # PyPI's Linux wheels carry CUDA and also run on the CPU; macOS wheels include MPS.
    kind = "with CUDA" if have_nvidia_gpu() else "(runs on the CPU here)"
    run([str(python), "-m", "pip", "install", "torch>=2.1", "torchvision>=0.16"],
        f"installing PyTorch {kind}")


def install_project(python: Path, dev: bool) -> None:
    extras = "backend,dev" if dev else "backend"
    run([str(python), "-m", "pip", "install", "-e", f"{ROOT}[{extras}]"],
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Set up CLIPascene on this machine.")
    parser.add_argument("--dev", action="store_true",
                        help="also install the test tools and the system packages tests need")
    parser.add_argument("--prefix", type=Path, default=ROOT / ".venv",
                        help="where to create the virtual environment (default: .venv here)")
    args = parser.parse_args(argv)
    try:
        check_python()
        python = create_venv(args.prefix.resolve())
        if args.dev:
            # Before the project: PyPI's inkex builds PyGObject against these headers.
            install_system_packages(DEV_APT_PACKAGES)
        install_torch(python)
        install_project(python, args.dev)
    except InstallError as error:
        say(f"FAILED: {error}")
        return 1
    bin_dir = venv_python(args.prefix).parent
    say(f"done. Try: {bin_dir / 'clipascene'} sketch photo.png --out result/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
