"""Tiny stand-ins for the real model files, built by the tests themselves (no downloads)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

#: The options of a `clipascene` run on the tiny random CLIP, without a progress bar.
TINY = ["--clip-model", "tiny-test", "--weights", "random", "--quiet"]


def save_tiny_u2net(path: Path) -> Path:
    """An ONNX file shaped like rembg's u2net.onnx: input (1, 3, 320, 320), outputs d0..d6 of shape
    (1, 1, 320, 320). d0 = sigmoid of a 1x1 convolution that is high on dark pixels; d1..d6 are its
    complement, so reading any output but the first gives the wrong answer."""
    from onnx import TensorProto, checker, helper, numpy_helper

    size = [1, 1, 320, 320]
    initialisers = [
        numpy_helper.from_array(np.full((1, 3, 1, 1), -2.0, np.float32), "weight"),
        numpy_helper.from_array(np.zeros(1, np.float32), "bias"),
        numpy_helper.from_array(np.ones(1, np.float32), "one"),
    ]
    nodes = [
        helper.make_node("Conv", ["input.1", "weight", "bias"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["d0"]),
        *[helper.make_node("Sub", ["one", "d0"], [f"d{index}"]) for index in range(1, 7)],
    ]
    graph = helper.make_graph(
        nodes, "tiny_u2net",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 320, 320])],
        [helper.make_tensor_value_info(f"d{index}", TensorProto.FLOAT, size) for index in range(7)],
        initialisers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


class TinyLama(torch.nn.Module):
    """LaMa's interface: (image (1,3,H,W), mask (1,1,H,W)) -> image, H and W multiples of 8. Fills
    the mask with the mean colour of the rest."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if image.shape[2] % 8 != 0 or image.shape[3] % 8 != 0:
            raise RuntimeError("sizes must be multiples of 8")
        keep = 1.0 - mask
        area = keep.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
        mean = (image * keep).sum(dim=(2, 3), keepdim=True) / area
        return image * keep + mean * mask


def save_tiny_lama(path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # TorchScript is deprecated, but LaMa ships as one
        torch.jit.script(TinyLama()).save(str(path))
    return path


def save_tiny_split_models(folder: Path) -> Path:
    """A models folder holding the tiny U²-Net and LaMa under their real names."""
    folder.mkdir(parents=True, exist_ok=True)
    save_tiny_u2net(folder / "u2net.onnx")
    save_tiny_lama(folder / "big-lama.pt")
    return folder
