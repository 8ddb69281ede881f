"""A backend without CLIP's weights refuses jobs at submission, saying why and what to do."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from clipascene_backend.app import create_app
from clipascene_backend.settings import Settings
from clipascene_backend.worker import ModelSettings
from clipascene_core.models.clip import CLIP_CACHE_NAME
from tests.backend_helpers import submit


def service(tmp_path, weights: str):
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    app = create_app(Settings(data_dir=tmp_path, devices=["cpu"], start_workers=False,
                              models=ModelSettings("ViT-B-32", weights, models)))
    return TestClient(app), models


@pytest.mark.parametrize("weights, says", [
    ("openai", ["OpenAI weights are not in", "install.py", "--weights"]),
    ("/nowhere/clip.pt", ["/nowhere/clip.pt", "does not exist"]),
])
def test_a_job_is_refused_when_the_clip_weights_are_missing(tmp_path, weights, says):
    client, _ = service(tmp_path, weights)
    with client:
        response = submit(client)
        assert response.status_code == 409
        for words in says:
            assert words in response.json()["detail"]
        assert client.get("/v1/jobs").json() == []
        assert client.get("/v1/health").json()["missing"][0] == "clip"


def test_a_job_is_accepted_once_the_weights_are_there(tmp_path):
    client, models = service(tmp_path, "openai")
    snapshot = models / CLIP_CACHE_NAME / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"stand-in")
    with client:
        response = submit(client)
        assert response.status_code == 202, response.text
        assert client.get(f"/v1/jobs/{response.json()['id']}").json()["status"] == "queued"
