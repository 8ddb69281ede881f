"""An offline first run answers at once: no CLIP weights and no way to fetch them is one line
and exit code 3 within seconds, not minutes of Hugging Face retries."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.backend_helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_sketch_without_weights_offline_ends_with_exit_3_in_under_10_s(tmp_path):
    # A proxy that refuses every connection stands for a machine without internet; the hub's
    # offline switch is off, as on a user's machine.
    dead = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, https_proxy=dead, HTTPS_PROXY=dead, http_proxy=dead, HTTP_PROXY=dead,
               CLIPASCENE_DATA_DIR=str(tmp_path / "data"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "no_proxy", "NO_PROXY", "CLIPASCENE_MODELS_DIR"):
        env.pop(name, None)
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "clipascene_core.cli", "sketch", str(ROOT / "examples" / "chelsea.jpg"),
         "--out", str(tmp_path / "result"), "--preset", "preview", "--device", "cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr[-2000:]
    assert elapsed < 10, f"{elapsed:.1f} s"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert "cannot be downloaded" in lines[0] and "https://huggingface.co" in lines[0]
    assert "clipascene models download" in lines[0] and "--weights PATH" in lines[0]
