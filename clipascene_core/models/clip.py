"""Loading CLIP's image encoder and reading its intermediate layers.

One front door, `load_clip`, for the real model (open_clip ViT-B-32 with OpenAI weights, a
local weights file) and for the tests' tiny random model, which is a registered open_clip
config so it goes through exactly the same code.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..paths import models_dir
from . import netcheck
from .precision import PRECISIONS, PrecisionChoice, choose_precision, measure

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_CLIP_MODEL = "ViT-B-32"
#: The tests' model: the ViT-B/32 shape family (224 px, 32 px patches, 12 blocks) but tiny.
TINY_CLIP_MODEL = "tiny-test"
_TINY_CONFIG_NAME = "clipascene-tiny-test"
_CONFIG_DIR = Path(__file__).parent / "model_configs"


class WeightsError(UserError, RuntimeError):
    """Model weights are missing or unusable; the message says how to get them."""

    http_status = 409  # the request is fine; this machine lacks what it needs


@dataclass(frozen=True)
class ClipInfo:
    model: str
    weights: str
    #: False for random weights: the sketches then show the mechanics only.
    meaningful: bool


class _FloatLayerNorm(nn.LayerNorm):
    """LayerNorm with float32 weights and statistics whatever its input, returned in the
    input's dtype. On the CPU, torch's LayerNorm takes a bfloat16 input with float32 weights
    as it is and accumulates in float32 (no cast of the activations each way); elsewhere the
    input is cast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias,
                            self.eps).to(x.dtype)


def residual_block(block: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ResidualAttentionBlock on (B, L, D) tokens, computed as the block computes
    it (pre-LayerNorm attention, then the MLP, each with its layer scale) but with every
    matrix product on a contiguous 2-D (B*L, D) operand and attention as two batched products
    (`_attention`).

    nn.MultiheadAttention with gradients lays its projections out as 3-D views that are not
    contiguous; in bfloat16 on the CPU `matmul` then takes a batched path that copies the
    weight and the activations on every call, forward and backward, and the copies cost far
    more than the products (2.7x slower than float32 on an AVX512-BF16 CPU). Written this
    way both precisions run the same plain GEMMs; the result is the block's own (a test
    compares them)."""
    attn = block.attn
    batch, length, width = tokens.shape
    heads = attn.num_heads
    normed = block.ln_1(tokens).reshape(batch * length, width)
    qkv = F.linear(normed, attn.in_proj_weight, attn.in_proj_bias)
    query, key, value = qkv.view(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    mixed = _attention(query, key, value)  # (B, heads, L, D / heads)
    mixed = mixed.transpose(1, 2).reshape(batch * length, width)
    attended = F.linear(mixed, attn.out_proj.weight, attn.out_proj.bias)
    tokens = tokens + block.ls_1(attended.view(batch, length, width))
    normed = block.ln_2(tokens).reshape(batch * length, width)
    return tokens + block.ls_2(block.mlp(normed).view(batch, length, width))


def patch_embedding(pixels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """ViT's patch embedding, a convolution whose stride is its kernel (no bias, no padding),
    as the one matrix product it is: (B, C, H, W) pixels, (width, C, k, k) weight ->
    (B, H/k * W/k, width) tokens in row-major patch order, as open_clip's conv1 + reshape.
    A convolution's gradient to its input costs 5-15x this product's on the CPU."""
    batch, channels, height, width = pixels.shape
    size = weight.shape[-1]
    rows, columns = height // size, width // size
    patches = (pixels.reshape(batch, channels, rows, size, columns, size)
               .permute(0, 2, 4, 1, 3, 5).reshape(batch * rows * columns, channels * size * size))
    return F.linear(patches, weight.reshape(len(weight), -1)).view(batch, rows * columns, -1)


def _attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, the softmax in float32. For CLIP's 50 tokens two small
    batched products beat the fused kernels, whose backward in bfloat16 on the CPU takes
    4-5x as long."""
    scores = (query * query.shape[-1] ** -0.5) @ key.transpose(-2, -1)
    return scores.float().softmax(-1).to(value.dtype) @ value


def _plain_blocks(visual: nn.Module) -> bool:
    """Whether the tower is the plain ViT `patch_embedding` and `residual_block` compute:
    a patchifying conv1, and self-attention blocks."""
    conv = getattr(visual, "conv1", None)
    if not (isinstance(conv, nn.Conv2d) and conv.bias is None and conv.kernel_size == conv.stride
            and conv.padding == (0, 0) and conv.kernel_size[0] == conv.kernel_size[1]
            and hasattr(visual, "class_embedding") and hasattr(visual, "patch_dropout")):
        return False
    for block in visual.transformer.resblocks:
        attn = getattr(block, "attn", None)
        if not (isinstance(attn, nn.MultiheadAttention) and attn.batch_first
                and attn._qkv_same_embed_dim and attn.in_proj_bias is not None
                and not hasattr(block, "ln_1_kv")):
            return False
    return True


class ClipEncoder(nn.Module):
    """CLIP's frozen vision tower, returning the outputs of its residual blocks.

    Images go in as (B, 3, 224, 224) RGB in [0, 1] (CLIP's normalisation is applied here).
    Features come out in the encoder's precision (`use_precision`); losses cast them to
    float32.
    """

    def __init__(self, visual: nn.Module, info: ClipInfo) -> None:
        super().__init__()
        self.visual = visual
        self.info = info
        #: open_clip's plain blocks run through `residual_block` (fast in bfloat16 too).
        self.plain_blocks = _plain_blocks(visual)
        #: How the precision was chosen (load_clip sets it; "asked" for a bare encoder).
        self.precision_choice = PrecisionChoice("fp32", "fp32", "asked")
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @property
    def precision(self) -> str:
        return "bf16" if self.visual.conv1.weight.dtype == torch.bfloat16 else "fp32"

    def use_precision(self, precision: str) -> ClipEncoder:
        """'fp32' or 'bf16'. bf16 casts the frozen weights once; matrix products and attention
        then run in bfloat16 while every LayerNorm computes in float32 (softmax in attention
        accumulates in float32 on its own). The renderer and the losses stay float32."""
        if precision == self.precision:
            return self
        self.precision_choice = PrecisionChoice(precision, precision, "asked")
        for module in self.visual.modules():
            if isinstance(module, nn.LayerNorm):
                module.__class__ = _FloatLayerNorm
        self.visual.to(torch.bfloat16 if precision == "bf16" else torch.float32)
        for module in self.visual.modules():
            if isinstance(module, nn.LayerNorm):
                module.float()
        return self

    @property
    def blocks(self) -> nn.ModuleList:
        return self.visual.transformer.resblocks

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def _tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 1 + patches, width) tokens entering block 0."""
        weights = self.visual.conv1.weight
        pixels = ((images - self.mean) / self.std).to(weights.dtype)
        if not self.plain_blocks:
            return self.visual._embeds(pixels)
        visual = self.visual
        patches = patch_embedding(pixels, weights)
        tokens = torch.cat([visual.class_embedding.to(patches.dtype).expand(len(patches), 1, -1),
                            patches], dim=1)
        return visual.ln_pre(visual.patch_dropout(tokens + visual.positional_embedding.to(tokens.dtype)))

    def layer_features(
        self, images: torch.Tensor, layers: Sequence[int]
    ) -> dict[int, torch.Tensor]:
        """Outputs of residual blocks `layers` (0-based): {layer: (B, 1 + patches, width)}.

        Only the blocks up to the deepest requested layer are run.
        """
        wanted = set(layers)
        last = max(wanted)
        if last >= self.num_layers:
            raise ValueError(f"layer {last} does not exist; the model has {self.num_layers}.")
        features = {}
        tokens = self._tokens(images)
        for index, block in enumerate(self.blocks[: last + 1]):
            tokens = residual_block(block, tokens) if self.plain_blocks else block(tokens)
            if index in wanted:
                features[index] = tokens
        return features

    @torch.no_grad()
    def attention_map(self, image: torch.Tensor) -> torch.Tensor:
        """CLIPasso's saliency: the CLS token's attention to the patches.

        image: (3, H, W) in [0, 1] on the canvas. Attention probabilities are averaged over
        heads and over all blocks, upsampled bicubically to (H, W) and min-max normalised.
        Returns (H, W) in [0, 1].
        """
        tokens = self._tokens(image[None])
        cls_rows = []
        for block in self.blocks:
            normed = block.ln_1(tokens)
            _, weights = block.attn(
                normed, normed, normed, need_weights=True, average_attn_weights=True
            )
            cls_rows.append(weights[0, 0, 1:].float())
            tokens = block(tokens)
        grid = self.visual.grid_size
        attention = torch.stack(cls_rows).mean(0).reshape(1, 1, *grid)
        height, width = image.shape[-2:]
        attention = F.interpolate(attention, size=(height, width), mode="bicubic")[0, 0]
        attention = attention - attention.min()
        return attention / attention.max().clamp_min(1e-12)


#: Folder the Hugging Face cache gives OpenAI's ViT-B/32 as open_clip fetches it.
CLIP_CACHE_NAME = "models--timm--vit_base_patch32_clip_224.openai"


def clip_weights_present(cache_dir: Path) -> bool:
    """Whether open_clip's download of the OpenAI ViT-B/32 weights is in `cache_dir`."""
    snapshots = Path(cache_dir) / CLIP_CACHE_NAME / "snapshots"
    return snapshots.is_dir() and any(path.is_file() for path in snapshots.rglob("*"))


def _quiet_random_weights(record: logging.LogRecord) -> bool:
    """Root-logger filter: drop open_clip's "No pretrained weights loaded" warning, which
    `load_clip(weights="random")` asks for on purpose; let every other record through."""
    return not record.getMessage().startswith("No pretrained weights loaded")


def _register_tiny_config() -> None:
    import open_clip

    if open_clip.get_model_config(_TINY_CONFIG_NAME) is None:
        open_clip.add_model_config(_CONFIG_DIR)


def load_clip(
    model: str = DEFAULT_CLIP_MODEL,
    weights: str = "openai",
    device: torch.device | str = "cpu",
    cache_dir: str | Path | None = None,
    precision: str = "fp32",
) -> ClipEncoder:
    """Build CLIP's image encoder, frozen, on `device`, in `precision` ("fp32", "bf16", or
    "auto": bf16 where a step measured clearly faster on this machine; see precision.py).

    model: an open_clip model name ("ViT-B-32") or "tiny-test" (the tests' tiny random model).
    weights: "openai" (downloaded once into `cache_dir`, by default the data folder's models/),
        "random" (no weights: only for tests and smoke checks), or a path to a weights file.
    Raises WeightsError with the next step to take when weights cannot be had.
    """
    import open_clip

    _register_tiny_config()
    name = _TINY_CONFIG_NAME if model == TINY_CLIP_MODEL else model
    if open_clip.get_model_config(name) is None:
        raise WeightsError(f"unknown CLIP model {model!r}; use {DEFAULT_CLIP_MODEL} or tiny-test.")
    # OpenAI's weights were trained with QuickGELU, and open_clip does not set it for
    # pretrained="openai" (it only warns): every path that may load them builds QuickGELU.
    # The tiny test model is of the same family (its config says so).
    quick_gelu = weights == "openai" or name in (DEFAULT_CLIP_MODEL, _TINY_CONFIG_NAME)
    cache = Path(cache_dir) if cache_dir else models_dir()
    if weights == "random":
        # open_clip warns on the root logger that no weights were loaded: that is the point.
        # A filter drops that one message (changing the root logger's level instead would
        # race with other threads, e.g. the backend's workers).
        logging.getLogger().addFilter(_quiet_random_weights)
        # Seeded, so that runs on random weights repeat exactly (tests, smoke checks).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            clip = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu)
    elif weights == "openai":
        cache.mkdir(parents=True, exist_ok=True)
        _check_clip_download(model, name, cache)
        try:
            clip = open_clip.create_model(name, pretrained="openai", cache_dir=str(cache),
                                          force_quick_gelu=quick_gelu)
        except Exception as error:  # open_clip raises RuntimeError or hub/network errors
            raise WeightsError(
                f"the CLIP {model} OpenAI weights are not available ({_first_line(error)}). "
                "Run `python3 install.py` (or `clipascene models download`) with internet "
                "access, or pass --weights PATH to a local weights file."
            ) from None
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"CLIP weights file {path} does not exist.")
        clip = _load_weights_file(open_clip, name, path, quick_gelu)
    info = ClipInfo(model=model, weights=weights, meaningful=weights != "random")
    device = torch.device(device)
    encoder = ClipEncoder(clip.visual, info).to(device)
    choice = choose_precision(precision, device, model, lambda: time_precisions(encoder))
    encoder.use_precision(choice.precision)
    encoder.precision_choice = choice
    logger.info("loaded CLIP %s (%s weights) on %s in %s", model, weights, device, choice.describe())
    return encoder


def time_precisions(encoder: ClipEncoder) -> dict[str, float]:
    """Milliseconds of a training step of `encoder` (float32) and of its bfloat16 copy."""
    half = copy.deepcopy(encoder).use_precision("bf16")
    try:
        return measure({"fp32": encoder, "bf16": half})
    finally:
        del half


def _check_clip_download(model: str, name: str, cache: Path) -> None:
    """Before open_clip tries to fetch missing OpenAI weights: one quick request to the hub.
    Offline, that says it at once (WeightsError) instead of minutes of hub retries."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if name != DEFAULT_CLIP_MODEL or offline or clip_weights_present(cache):
        return  # other models' cache names are open_clip's business; offline fails at once
    unreachable = netcheck.unreachable([netcheck.hub_url()], timeout=4.0)
    if unreachable:
        raise WeightsError(
            f"the CLIP {model} OpenAI weights are not in {cache} and cannot be downloaded (no "
            f"answer from {unreachable}). When online, run `clipascene models download`, or pass "
            "--weights PATH to a local weights file.")


def _load_weights_file(open_clip, name: str, path: Path, quick_gelu: bool) -> nn.Module:
    try:
        return open_clip.create_model(name, pretrained=str(path), force_quick_gelu=quick_gelu)
    except Exception as state_dict_error:
        # OpenAI's original release is a TorchScript archive, which open_clip loads separately.
        try:
            return open_clip.load_openai_model(str(path), device="cpu", jit=False)
        except Exception:
            raise WeightsError(
                f"could not load CLIP weights from {path} ({_first_line(state_dict_error)})."
            ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def add_model_arguments(parser) -> None:
    """--clip-model, --weights and --precision on an argparse parser (both command lines)."""
    parser.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL,
                        help="open_clip model name, or tiny-test (tiny random model for tests)")
    parser.add_argument("--weights", default="openai",
                        help="openai (downloaded once), random, or a path to a weights file")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="CLIP's precision: auto (bfloat16 where a few steps timed once on this "
                             "machine run clearly faster in it, else float32), fp32 or bf16")


def resolve_device(requested: str = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps' -> a usable torch.device, or a clear error."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU here.")
    if requested == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise RuntimeError("--device mps was asked for, but Apple's MPS is not available here.")
    try:
        return torch.device(requested)
    except RuntimeError:
        raise RuntimeError(f"unknown device {requested!r}; use auto, cpu, cuda or mps.") from None


def default_threads() -> None:
    """Use every core for intra-op parallelism unless the user set OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)
