"""`clipascene inkscape install|uninstall|path|zip`: the Inkscape extension this package carries.

The extension's files (`inkscape_ext/` in the repository) travel inside the distribution as
the package `clipascene_inkscape`. `install` copies them (or, for a developer, links the
repository's folder) to `extensions/clipascene/` in Inkscape's user profile and records there
where the backend is (`clipascene_ext/backend.json`), so the extension can start it;
`uninstall` removes that folder; `zip` writes the one zip for Extensions > Manage Extensions.
`install.py` calls `install` too. Nothing here runs Inkscape's own Python.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import resources
from pathlib import Path

from ..errors import UserError
from ..version import __version__

#: The folder the extension gets inside Inkscape's extensions folder.
FOLDER = "clipascene"
RECORD = Path("clipascene_ext") / "backend.json"
#: Never copied: caches, a developer checkout's own record, the package marker of the wheel.
_SKIP = ("__pycache__", "*.pyc", "backend.json")
README = """CLIPascene for Inkscape {version}: Extensions > CLIPascene > Sketch Image / Change Abstraction.

What it talks to: only the CLIPascene daemon on this computer (http://127.0.0.1:8765 by
default; the address is a field of the dialog). The extension sends it the selected photo,
and the daemon, a separate program, makes the sketches with PyTorch and CLIP. No other
network access.

How to get the daemon (once):
  Linux and macOS:  pipx install "clipascene[backend]"    (or: uv tool install "clipascene[backend]")
  Windows:          py -m pip install --user pipx
                    py -m pipx install "clipascene[backend]"
  From the project's repository instead: python3 install.py
Then, so that the extension can start the daemon by itself:  clipascene inkscape install
`clipascene doctor` reports what the daemon's machine has (versions, devices, weights).

Licence: MIT (LICENSE).
"""


class InkscapeError(UserError):
    """The extension cannot be put in place; the message says what to do."""


def extension_source() -> Path:
    """The extension's files as installed with this package."""
    return Path(str(resources.files("clipascene_inkscape")))


def profile_candidates() -> list[Path]:
    """Inkscape's user profile folders in the order it uses them on this OS (the usual
    install first, then Flatpak and Snap, which keep their own)."""
    home = Path.home()
    if sys.platform == "darwin":
        usual = home / "Library" / "Application Support" / "org.inkscape.Inkscape" / "config" / "inkscape"
    elif os.name == "nt":
        usual = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming") / "inkscape"
    else:
        usual = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "inkscape"
    return [usual,
            home / ".var" / "app" / "org.inkscape.Inkscape" / "config" / "inkscape",  # Flatpak
            home / "snap" / "inkscape" / "current" / ".config" / "inkscape"]  # Snap


def extensions_dir(profile: Path | None = None, ask_inkscape: bool = True) -> Path | None:
    """Inkscape's user extensions folder: `profile`, $INKSCAPE_PROFILE_DIR, what `inkscape
    --user-data-directory` says, then the first profile folder of this OS that exists; None
    when there is none (Inkscape never ran here)."""
    if profile is not None:
        return Path(profile).expanduser() / "extensions"
    if os.environ.get("INKSCAPE_PROFILE_DIR"):
        return Path(os.environ["INKSCAPE_PROFILE_DIR"]).expanduser() / "extensions"
    if ask_inkscape and shutil.which("inkscape"):
        try:
            answer = subprocess.run(["inkscape", "--user-data-directory"], capture_output=True,
                                    text=True, timeout=60)
            if answer.returncode == 0 and answer.stdout.strip():
                return Path(answer.stdout.strip().splitlines()[-1]) / "extensions"
        except (OSError, subprocess.TimeoutExpired):
            pass
    return next((folder / "extensions" for folder in profile_candidates() if folder.is_dir()), None)


def backend_executable() -> Path | None:
    """The `clipascene-backend` command of this environment (beside this Python's scripts)."""
    name = "clipascene-backend.exe" if os.name == "nt" else "clipascene-backend"
    beside = Path(sysconfig.get_path("scripts")) / name
    if beside.is_file():
        return beside
    found = shutil.which("clipascene-backend")
    return Path(found) if found else None


def installed_version(extensions: Path) -> str | None:
    """The version of the extension in `extensions/clipascene`, or None when it is not there."""
    init = extensions / FOLDER / "clipascene_ext" / "__init__.py"
    try:
        match = re.search(r'^__version__ = "([^"]+)"', init.read_text(encoding="utf-8"), re.M)
    except OSError:
        return None
    return match.group(1) if match else "unknown"


def _remove(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def install(extensions: Path, *, link: bool = False, backend: Path | None = None,
            data_dir: Path | None = None, source: Path | None = None) -> Path:
    """Put the extension in `extensions/clipascene` (replacing an earlier one) and record the
    backend's command (and data folder, when given) for it. `link`: a symlink to `source`
    instead of a copy, for a developer's checkout. Returns the extension's folder."""
    source = source or extension_source()
    if not (source / "clipascene_sketch.inx").is_file():
        raise InkscapeError(f"the extension's files are not in {source}; reinstall clipascene.")
    target = extensions / FOLDER
    _remove(target)
    extensions.mkdir(parents=True, exist_ok=True)
    if link:
        target.symlink_to(source, target_is_directory=True)
    else:
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(*_SKIP))
        (target / "__init__.py").unlink(missing_ok=True)  # the wheel's package marker
    backend = backend or backend_executable()
    record = {"version": __version__}
    if backend is not None:
        record["backend"] = str(backend)
    if data_dir is not None:
        record["data_dir"] = str(data_dir)
    (target / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return target


def uninstall(extensions: Path) -> Path | None:
    """Remove `extensions/clipascene`; the folder removed, or None when there was none."""
    target = extensions / FOLDER
    if not (target.exists() or target.is_symlink()):
        return None
    _remove(target)
    return target


def zip_members(source: Path | None = None) -> dict[str, Path]:
    """{name in the zip: file} for the Extension Manager's zip: the extension's files only."""
    source = source or extension_source()
    members = {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or any(relative.match(pattern) for pattern in _SKIP) \
                or "__pycache__" in relative.parts or relative.as_posix() == "__init__.py":
            continue
        members[relative.as_posix()] = path
    return members


def write_zip(folder: Path, source: Path | None = None) -> Path:
    """`folder/clipascene-inkscape-VERSION.zip`: for every OS, the extension's files at the
    top (Inkscape's Extension Manager unpacks them into a folder of their own), its gallery
    icon, the licence and README.txt (what it talks to, how to get the daemon)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"clipascene-inkscape-{__version__}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, file in zip_members(source).items():
            archive.write(file, name)
        archive.writestr("README.txt", README.format(version=__version__))
    return path


def add_commands(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "inkscape", help="put the extension into Inkscape (install, uninstall, path) or write "
                         "the Extension Manager zip (zip DIR)")
    command.add_argument("action", choices=("install", "uninstall", "path", "zip"))
    command.add_argument("folder", nargs="?", type=Path, default=None,
                         help="with zip: the folder to write the zip to")
    command.add_argument("--profile", type=Path, default=None,
                         help="Inkscape's profile folder (default: $INKSCAPE_PROFILE_DIR, else "
                              "the one Inkscape uses)")
    command.add_argument("--data-dir", type=Path, default=None,
                         help="with install: the data folder the extension starts the backend with")
    command.add_argument("--link", action="store_true",
                         help="with install: link this checkout's folder instead of copying")


def run(args: argparse.Namespace) -> int:
    if args.action == "zip":
        if args.folder is None:
            raise InkscapeError("say where to write the zip: clipascene inkscape zip DIR")
        print(write_zip(args.folder.expanduser()))
        return 0
    extensions = extensions_dir(args.profile)
    if extensions is None:
        raise InkscapeError(
            "Inkscape's profile folder was not found (Inkscape has not run here yet?). Start "
            "Inkscape once, or pass --profile DIR (or set INKSCAPE_PROFILE_DIR).")
    if args.action == "path":
        print(extensions / FOLDER)
        return 0
    if args.action == "uninstall":
        removed = uninstall(extensions)
        print(f"removed {removed}" if removed else f"no CLIPascene extension in {extensions}")
        return 0
    data_dir = args.data_dir.expanduser().resolve() if args.data_dir else None
    target = install(extensions, link=args.link, data_dir=data_dir)
    backend = json.loads((target / RECORD).read_text(encoding="utf-8")).get("backend")
    print(f"Inkscape extension {__version__} {'linked' if args.link else 'copied'} to {target}")
    print(f"it starts the backend {backend}" if backend else
          "WARNING: no clipascene-backend here; install clipascene[backend] so the extension "
          "can start it.")
    print("Restart Inkscape, then: Extensions > CLIPascene > Sketch Image.")
    return 0
