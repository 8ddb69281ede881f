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


def offline(tmp_path: Path, *arguments: str) -> tuple[subprocess.CompletedProcess, float]:
    """`clipascene ARGUMENTS` on a machine without internet (a proxy that refuses every
    connection stands for it), the hub's offline switch off as on a user's machine, and no
    weights; with the seconds it took."""
    dead = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, https_proxy=dead, HTTPS_PROXY=dead, http_proxy=dead, HTTP_PROXY=dead,
               CLIPASCENE_DATA_DIR=str(tmp_path / "data"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "no_proxy", "NO_PROXY", "CLIPASCENE_MODELS_DIR"):
        env.pop(name, None)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "clipascene_core.cli", *arguments], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    return result, time.monotonic() - started


def beyond_start_up(tmp_path: Path, elapsed: float) -> float:
    """`elapsed` less the time `clipascene --version` takes here (Python and PyTorch loading:
    about 4 s of the 5 s an offline sketch takes on an idle machine, but several times that on
    a loaded one); what is left is the time spent on the weights."""
    start_up = min(offline(tmp_path, "--version")[1] for _ in range(2))
    return elapsed - start_up


def test_sketch_without_weights_offline_ends_with_exit_3_in_under_10_s(tmp_path):
    result, elapsed = offline(tmp_path, "sketch", str(ROOT / "examples" / "chelsea.jpg"),
                              "--out", str(tmp_path / "result"), "--preset", "preview", "--device", "cpu")
    assert result.returncode == 3, result.stderr[-2000:]
    # Hugging Face's retries took 46 s; one refused connection takes milliseconds.
    assert beyond_start_up(tmp_path, elapsed) < 5, f"{elapsed:.1f} s"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert "cannot be downloaded" in lines[0] and "https://huggingface.co" in lines[0]
    assert "clipascene models download" in lines[0] and "--weights PATH" in lines[0]


def test_models_download_offline_says_so_in_one_line(tmp_path):
    result, elapsed = offline(tmp_path, "models", "download", "--quiet")
    assert result.returncode == 1 and beyond_start_up(tmp_path, elapsed) < 5, (elapsed, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot download clip, u2net, big-lama: no answer from" in lines[0], lines
    assert not (tmp_path / "data" / "models" / "u2net.onnx.part").exists()
