"""The distribution as users install it: a wheel (and sdist) that carries the extension,
installed into a fresh environment outside the repository; the Extension Manager zip.

The fresh environment sees this one's dependencies through a .pth file (no network here) and
gets the wheel itself with `pip install --no-deps`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import requests
from lxml import etree

from tests.backend_helpers import free_port, module_server
from tests.inkscape_helpers import QUICK, profile, sketch_with

ROOT = Path(__file__).resolve().parent.parent
#: The repository's folders and the names they install under.
INSTALLED_AS = {"clipascene_core": "clipascene_core", "backend": "clipascene_backend",
                "inkscape_ext": "clipascene_inkscape"}
INX_NS = "{http://www.inkscape.org/namespace/inkscape/extension}"
#: What Inkscape's Python has on every OS besides the standard library.
INKSCAPE_SHIPS = {"inkex", "lxml", "gi"}


def build_sdist(folder: Path) -> Path:
    """The sdist, as `python -m build --sdist` makes it (setuptools' own hook)."""
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    result = subprocess.run([sys.executable, "-c", code, str(folder)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / result.stdout.strip().splitlines()[-1]


def build_wheel(sdist: Path, folder: Path) -> Path:
    """The wheel built from the unpacked sdist, as `python -m build` does (so no stale build/
    folder of the checkout can slip into it); no build isolation: no network here."""
    with tarfile.open(sdist) as archive:
        archive.extractall(folder / "unpacked", filter="data")
    source = next((folder / "unpacked").iterdir())
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(folder), str(source)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return next(folder.glob("clipascene-*.whl"))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    return build_sdist(tmp_path_factory.mktemp("sdist"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, sdist) -> Path:
    return build_wheel(sdist, tmp_path_factory.mktemp("dist"))


def fresh_environment(prefix: Path, wheel: Path) -> Path:
    """A venv outside the repository with the wheel installed in it; returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    site = next((prefix / "lib").glob("python3*/site-packages"))
    # This environment's dependencies (torch, fastapi, …), as plain path entries: .pth files
    # in them are not run, so no editable install of the repository comes along.
    dependencies = sorted({str(Path(module.__file__).resolve().parents[1])
                           for module in (pytest, requests, etree)} | {
        path for path in sys.path if path.endswith("site-packages")})
    (site / "dependencies.pth").write_text("\n".join(dependencies) + "\n")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(prefix / "bin" / "python"),
                             "install", "-q", "--no-deps", str(wheel)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return prefix / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheel) -> Path:
    return fresh_environment(tmp_path_factory.mktemp("env") / "venv", wheel)


def outside_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", CLIPASCENE_DATA_DIR=str(tmp_path / "data"), **extra)
    env.pop("PYTHONPATH", None)
    return env


def test_the_wheel_holds_the_whole_product_under_this_projects_names(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == set(INSTALLED_AS.values()), "nothing called backend at the top of site-packages"
    # Every module of the tree, none forgotten (a new subpackage missing from pyproject.toml's
    # packages) and none that is no longer there.
    tree = {f"{package}/{path.relative_to(ROOT / folder).as_posix()}"
            for folder, package in INSTALLED_AS.items() for path in (ROOT / folder).rglob("*.py")
            if "__pycache__" not in path.parts}
    assert {name for name in names if name.endswith(".py")} == tree
    for data in ("clipascene_inkscape/clipascene_sketch.inx", "clipascene_inkscape/clipascene_change.inx",
                 "clipascene_inkscape/clipascene_ext/picker.ui", "clipascene_inkscape/LICENSE",
                 "clipascene_inkscape/icons/clipascene_sketch.svg", "clipascene_backend/web/index.html",
                 "clipascene_core/models/model_configs/clipascene-tiny-test.json"):
        assert data in names, data
    assert not [name for name in names if name.endswith("backend.json")], "a checkout's own record"
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt")))
    assert b"clipascene-backend = clipascene_backend.cli:main" in entry_points


def test_the_sdist_holds_the_sources_of_the_whole_product(sdist):
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for name in ("pyproject.toml", "README.md", "inkscape_ext/clipascene_sketch.inx", "inkscape_ext/LICENSE",
                 "inkscape_ext/icons/clipascene_change.svg", "inkscape_ext/clipascene_ext/picker.ui",
                 "backend/web/index.html"):
        assert name in names, name


def test_installed_outside_the_repository_cli_daemon_and_inkscape_install(installed, tmp_path):
    env = outside_env(tmp_path, INKSCAPE_PROFILE_DIR=str(tmp_path / "profile"))
    python = str(installed / "python")

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert run(python, "-c", "import backend").returncode != 0, "a top-level backend is installed"
    where = run(python, "-c", "import clipascene_backend, clipascene_core; "
                              "print(clipascene_backend.__file__, clipascene_core.__file__)")
    assert where.returncode == 0 and str(ROOT) not in where.stdout, where.stdout + where.stderr
    version = run(str(installed / "clipascene"), "--version")
    assert version.returncode == 0 and version.stdout.split() == ["clipascene", "0.1.0"]

    done = run(str(installed / "clipascene"), "inkscape", "install")
    assert done.returncode == 0, done.stderr
    extension = tmp_path / "profile" / "extensions" / "clipascene"
    for name in ("clipascene_sketch.inx", "clipascene_sketch.py", "clipascene_ext/picker.ui",
                 "icons/clipascene_sketch.svg"):
        assert (extension / name).is_file(), name
    assert not (extension / "__init__.py").exists()
    record = json.loads((extension / "clipascene_ext" / "backend.json").read_text())
    assert Path(record["backend"]) == installed / "clipascene-backend"
    doctor = run(str(installed / "clipascene"), "doctor", "--json", "--server", f"http://127.0.0.1:{free_port()}")
    assert doctor.returncode == 0, doctor.stderr
    report = json.loads(doctor.stdout)
    assert report["inkscape"]["extension"] == {"installed": True, "version": "0.1.0", "path": str(extension)}
    assert report["daemon"]["running"] is False and report["clipascene"] == "0.1.0"
    assert set(report["weights"]) == {"clip", "u2net", "big-lama"} and report["devices"][0]["auto_precision"]
    text = run(str(installed / "clipascene"), "doctor", "--server", f"http://127.0.0.1:{free_port()}").stdout
    assert f"extension: 0.1.0 in {extension}" in text and "): precision auto: not measured yet" in text, text

    # The daemon from the recorded command, as the extension starts it: its web page answers.
    port = free_port()
    server = subprocess.Popen(
        [record["backend"], "serve", "--port", str(port), "--clip-model", "tiny-test",
         "--weights", "random", "--device", "cpu", "--log-level", "WARNING"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = None
        deadline = time.monotonic() + 90
        while page is None and time.monotonic() < deadline:
            try:
                page = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            except requests.RequestException:
                time.sleep(0.5)
        assert page is not None and page.status_code == 200 and "<html" in page.text.lower()
        health = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).json()
        assert health["version"] == "0.1.0" and health["api_version"] >= 1
        running = json.loads(run(str(installed / "clipascene"), "doctor", "--json", "--server",
                                 f"http://127.0.0.1:{port}").stdout)["daemon"]
        assert running["running"] and running["api_version"] == health["api_version"]
    finally:
        server.terminate()
        server.wait(timeout=30)

    assert run(str(installed / "clipascene"), "inkscape", "uninstall").returncode == 0
    assert not extension.exists() and (tmp_path / "profile" / "extensions").is_dir()


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    yield from module_server(tmp_path_factory)


@pytest.mark.skipif((shutil.which("inkscape") is None or shutil.which("xvfb-run") is None)
                    and os.environ.get("CI") != "true",
                    reason="needs Debian's inkscape and xvfb (python3 install.py --dev installs them)")
def test_the_extension_installed_from_the_wheel_sketches_in_real_inkscape(installed, backend, tmp_path):
    settings = profile(tmp_path / "profile", backend.url, "org.clipascene.sketch_image", install=False,
                       **QUICK)
    done = subprocess.run([str(installed / "clipascene"), "inkscape", "install"], cwd=tmp_path,
                          env=outside_env(tmp_path, INKSCAPE_PROFILE_DIR=str(settings)),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert str(ROOT) not in (settings / "extensions" / "clipascene").resolve().as_posix()
    sketch_with(settings, tmp_path)


def imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            modules.add(node.module.split(".")[0])
    return modules


def inkscape_schema() -> etree.RelaxNG:
    """Inkscape's INX schema: Debian's Inkscape ships it, so does inkex's tester."""
    import inkex

    for path in (Path("/usr/share/inkscape/extensions/inkscape.extension.rng"),
                 Path(inkex.__file__).parent / "tester" / "inkscape.extension.rng"):
        if path.is_file():
            return etree.RelaxNG(etree.parse(str(path)))
    raise AssertionError("no inkscape.extension.rng: install inkscape or inkex")


def test_the_extension_manager_zip(tmp_path):
    from clipascene_core.cli.commands import main

    assert main(["inkscape", "zip", str(tmp_path)]) == 0
    path = tmp_path / "clipascene-inkscape-0.1.0.zip"
    archive = zipfile.ZipFile(path)
    names = set(archive.namelist())
    assert {"clipascene_sketch.inx", "clipascene_change.inx", "clipascene_sketch.py",
            "clipascene_ext/client.py", "clipascene_ext/picker.ui", "LICENSE", "README.txt"} <= names
    assert not [name for name in names if name == "__init__.py" or "__pycache__" in name
                or name.endswith("backend.json")]
    readme = archive.read("README.txt").decode()
    assert "127.0.0.1:8765" in readme and "pipx install" in readme and "install.py" in readme
    assert "MIT" in archive.read("LICENSE").decode()
    # No module Inkscape does not ship: the standard library, inkex, lxml, GTK, and its own.
    own = {name.split("/")[0].removesuffix(".py") for name in names if name.endswith(".py")}
    for name in names:
        if name.endswith(".py"):
            foreign = imported_modules(archive.read(name).decode()) - INKSCAPE_SHIPS - own \
                - set(sys.stdlib_module_names)
            assert not foreign, (name, foreign)
    schema = inkscape_schema()
    for name in ("clipascene_sketch.inx", "clipascene_change.inx"):
        inx = etree.fromstring(archive.read(name))
        icon = inx.find(f"{INX_NS}effect/{INX_NS}icon")
        assert icon is not None and icon.text in names, f"{name}: no gallery icon in the zip"
        svg = etree.fromstring(archive.read(icon.text))
        assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("viewBox")
        # Inkscape 1.4 reads <effect><icon> (src/extension/effect.cpp); the RELAX NG schema
        # Inkscape and inkex ship predates it, so it is checked without that one element.
        icon.getparent().remove(icon)
        assert schema.validate(inx), f"{name}: {schema.error_log}"


def test_extension_and_core_state_the_same_version():
    import clipascene_ext  # from inkscape_ext/, on pytest's pythonpath

    from clipascene_backend.schemas import API_VERSION
    from clipascene_core import __version__

    assert clipascene_ext.__version__ == __version__
    assert clipascene_ext.API_VERSION == API_VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", __version__)
