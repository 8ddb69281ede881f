import pytest
import torch

from clipascene_core.models.clip import WeightsError, load_clip, resolve_device


def test_tiny_model_has_the_vit_b32_shape_family(tiny_encoder):
    images = torch.rand(3, 3, 224, 224)
    features = tiny_encoder.layer_features(images, [2, 8, 11])
    assert sorted(features) == [2, 8, 11]
    assert all(value.shape == (3, 50, 48) for value in features.values())
    assert tiny_encoder.num_layers == 12


def test_encoder_is_frozen_but_passes_gradients_to_the_image(tiny_encoder):
    assert not any(parameter.requires_grad for parameter in tiny_encoder.parameters())
    images = torch.rand(2, 3, 224, 224, requires_grad=True)
    tiny_encoder.layer_features(images, [4])[4].square().mean().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in tiny_encoder.parameters())


def test_only_the_needed_blocks_run(tiny_encoder):
    calls = []
    # Each block's MLP runs once per block that runs (whichever way the block is called).
    hooks = [block.mlp.register_forward_hook(lambda *_, i=i: calls.append(i))
             for i, block in enumerate(tiny_encoder.blocks)]
    try:
        tiny_encoder.layer_features(torch.rand(1, 3, 224, 224), [2, 3])
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == [0, 1, 2, 3]


def test_layer_outputs_equal_open_clips_own_intermediates(tiny_encoder):
    images = torch.rand(2, 3, 224, 224)
    ours = tiny_encoder.layer_features(images, [5])[5]
    normalised = (images - tiny_encoder.mean) / tiny_encoder.std
    theirs = tiny_encoder.visual.transformer.forward_intermediates(
        tiny_encoder.visual._embeds(normalised), indices=[5])[1][0]
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_weights_file_loads_through_the_real_path(tmp_path, tiny_encoder):
    import open_clip

    from clipascene_core.models.clip import _register_tiny_config

    _register_tiny_config()
    model = open_clip.create_model("clipascene-tiny-test", pretrained=None)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    loaded = load_clip("tiny-test", str(path))
    images = torch.rand(1, 3, 224, 224)
    expected = model.visual.transformer(model.visual._embeds(
        (images - loaded.mean) / loaded.std))
    assert torch.allclose(loaded.layer_features(images, [11])[11], expected, atol=1e-5)
    assert loaded.info.meaningful


def test_missing_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="install.py"):
        load_clip("ViT-B-32", "openai", cache_dir=tmp_path)
    with pytest.raises(WeightsError, match="does not exist"):
        load_clip("tiny-test", str(tmp_path / "missing.pt"))
    with pytest.raises(WeightsError, match="unknown CLIP model"):
        load_clip("ViT-Z-99", "random")


def test_attention_map_is_a_normalised_canvas_map(tiny_encoder):
    attention = tiny_encoder.attention_map(torch.rand(3, 224, 224))
    assert attention.shape == (224, 224)
    assert attention.min() == 0 and abs(attention.max().item() - 1) < 1e-6


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_random_weights_are_the_same_every_time():
    first, second = load_clip("tiny-test", "random"), load_clip("tiny-test", "random")
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                 second.state_dict().values(), strict=True))
