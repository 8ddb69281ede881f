"""The extension's tests again, under Inkscape 1.2's own inkex and Debian's python3.

Inkscape runs extensions with /usr/bin/python3 and the inkex bundled in its extensions folder
(1.2 on Debian 12), not with the project's venv (PyPI inkex 1.4). That Python has no pytest,
so the extension tests are `unittest` modules and run here through `python3 -m unittest`.
"""

from __future__ import annotations

import os
import subprocess
import unittest
from pathlib import Path

SYSTEM_PYTHON = Path("/usr/bin/python3")
INKSCAPE_EXTENSIONS = Path("/usr/share/inkscape/extensions")
TESTS = Path(__file__).resolve().parent
MODULES = ("test_ext_import", "test_ext_source", "test_ext_style")


# In CI (CI=true) a missing Inkscape fails this test instead of skipping it.
@unittest.skipUnless(((INKSCAPE_EXTENSIONS / "inkex").is_dir() and SYSTEM_PYTHON.exists())
                     or os.environ.get("CI") == "true",
                     "Inkscape's bundled inkex (/usr/share/inkscape/extensions/inkex) is not installed")
class BundledInkexTests(unittest.TestCase):
    def run_system_python(self, *arguments: str) -> subprocess.CompletedProcess:
        environment = {key: value for key, value in os.environ.items()
                       if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(INKSCAPE_EXTENSIONS), str(TESTS.parent / "inkscape_ext")])
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        return subprocess.run([str(SYSTEM_PYTHON), *arguments], cwd=TESTS, env=environment,
                              capture_output=True, text=True, timeout=300)

    def test_extension_tests_pass_with_the_bundled_inkex(self):
        probe = self.run_system_python("-c", "import inkex; print(inkex.__file__)")
        self.assertEqual(probe.returncode, 0, probe.stderr)
        self.assertTrue(probe.stdout.strip().startswith(str(INKSCAPE_EXTENSIONS)), probe.stdout)

        result = self.run_system_python("-m", "unittest", *MODULES)
        report = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, report[-6000:])
        self.assertIn("OK", report)
