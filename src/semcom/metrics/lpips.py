"""LPIPS v0.1 (Zhang et al. 2018) with AlexNet or VGG16 features, in plain PyTorch.

Pipeline: ``[0,1]`` images -> ``[-1,1]`` -> ScalingLayer ``(x - shift) / scale`` with
``shift = [-.030, -.088, -.188]``, ``scale = [.458, .448, .450]`` -> five ReLU feature maps ->
unit-normalise each feature vector over channels (``f / (||f||_2 + 1e-10)``) -> squared difference
-> 1x1 linear head (no bias) per layer -> spatial mean -> sum over the five layers.

Weights are read from ``$SEMCOM_WEIGHTS/lpips/{alexnet,vgg16}_lpips_v0.1.safetensors`` (keys
``conv{i}.{weight,bias}`` in torchvision order and ``lin{k}.weight`` of shape ``[1,C,1,1]``). When
they are missing, :func:`semcom.paths.weights_path` builds them from the official downloads
(torchvision ImageNet trunk + PerceptualSimilarity v0.1 linear heads), see
:func:`official_to_semcom`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .. import paths
from ._check import check_pair, shared_reference
from ._nets import (
    ALEX_CONVS,
    ALEX_TORCHVISION_IDX,
    VGG16_CONVS,
    VGG16_TORCHVISION_IDX,
    AlexTrunk,
    VGG16Trunk,
)

LPIPS_WEIGHTS = {
    "alex": "lpips/alexnet_lpips_v0.1.safetensors",
    "vgg": "lpips/vgg16_lpips_v0.1.safetensors",
}
TRUNK_URLS = {
    "alex": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "vgg": "https://download.pytorch.org/models/vgg16-397923af.pth",
}
LIN_URLS = {
    "alex": "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
    "vgg": "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
}
_NET_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}
_SPECS = {"alex": (ALEX_CONVS, ALEX_TORCHVISION_IDX), "vgg": (VGG16_CONVS, VGG16_TORCHVISION_IDX)}
_LIN_KEY = re.compile(r"^lin(\d+)\.(?:model\.\d+\.)?weight$")


def _canonical_net(net: str) -> str:
    try:
        return _NET_ALIASES[net.lower()]
    except KeyError:
        raise ValueError(f"LPIPS: unknown net {net!r}; expected 'alex' or 'vgg'") from None


def official_to_semcom(
    net: str, trunk: Mapping[str, Tensor], lin: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Map official state dicts to the semcom safetensors layout (pure function, no I/O).

    Args:
        net: ``"alex"`` or ``"vgg"``.
        trunk: torchvision ImageNet state dict (``features.{idx}.{weight,bias}``; the classifier
            keys are ignored).
        lin: PerceptualSimilarity v0.1 heads (``lin{k}.model.1.weight``; ``lin{k}.weight`` is
            accepted too).

    Returns:
        ``{"conv{i}.weight", "conv{i}.bias", "lin{k}.weight"}`` -> contiguous float32 tensors.

    Raises:
        KeyError: a required key is missing. ValueError: a tensor has the wrong shape.
    """
    net = _canonical_net(net)
    convs, idx = _SPECS[net]
    out: dict[str, Tensor] = {}
    for i, ((cin, cout, k, _, _), j) in enumerate(zip(convs, idx, strict=True)):
        for part, shape in (("weight", (cout, cin, k, k)), ("bias", (cout,))):
            key = f"features.{j}.{part}"
            if key not in trunk:
                raise KeyError(f"{net} trunk state dict lacks {key!r}")
            t = trunk[key]
            if tuple(t.shape) != shape:
                raise ValueError(f"{net} trunk {key}: expected shape {shape}, got {tuple(t.shape)}")
            out[f"conv{i}.{part}"] = t.detach().to(torch.float32).contiguous().clone()
    heads: dict[int, Tensor] = {}
    for key, t in lin.items():
        m = _LIN_KEY.match(key)
        if m:
            heads[int(m.group(1))] = t
    for k, (_, cout, *_rest) in enumerate(_lpips_layer_convs(net)):
        if k not in heads:
            raise KeyError(f"{net} LPIPS heads lack 'lin{k}.model.1.weight'")
        t = heads[k]
        if tuple(t.shape) != (1, cout, 1, 1):
            raise ValueError(
                f"{net} LPIPS head lin{k}: expected shape {(1, cout, 1, 1)}, got {tuple(t.shape)}"
            )
        out[f"lin{k}.weight"] = t.detach().to(torch.float32).contiguous().clone()
    return out


def _lpips_layer_convs(net: str) -> list[tuple[int, int, int, int, int]]:
    """The conv whose ReLU output feeds each LPIPS layer (last conv of each block)."""
    convs, _ = _SPECS[net]
    if net == "alex":
        return list(convs)
    return [convs[i] for i in (1, 3, 6, 9, 12)]


def save_safetensors_atomic(tensors: Mapping[str, Tensor], dest: Path) -> None:
    """Write ``tensors`` to ``dest`` as safetensors via a temporary file and ``os.replace``."""
    with paths.atomic_path(dest) as tmp:
        save_file(dict(tensors), str(tmp))


def make_fetch(net: str) -> Callable[[Path], None]:
    """Download function for ``LPIPS_WEIGHTS[net]``: official files -> semcom safetensors."""
    net = _canonical_net(net)

    def fetch(dest: Path) -> None:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            trunk_file, lin_file = Path(tmp) / "trunk.pth", Path(tmp) / "lin.pth"
            paths.download_url(TRUNK_URLS[net], trunk_file)
            paths.download_url(LIN_URLS[net], lin_file)
            # weights_only=True: tensors only, never unpickles code.
            trunk = torch.load(trunk_file, map_location="cpu", weights_only=True)
            lin = torch.load(lin_file, map_location="cpu", weights_only=True)
            save_safetensors_atomic(official_to_semcom(net, trunk, lin), dest)

    return fetch


for _net, _rel in LPIPS_WEIGHTS.items():
    paths.register_download(_rel, make_fetch(_net))


def load_weights(net: str, weights: str | os.PathLike[str] | None = None) -> dict[str, Tensor]:
    """Load the semcom LPIPS safetensors for ``net`` (explicit file, or resolved via paths)."""
    net = _canonical_net(net)
    path = Path(weights) if weights is not None else paths.weights_path(LPIPS_WEIGHTS[net])
    return load_file(str(path))


def normalize_channels(f: Tensor, eps: float = 1e-10) -> Tensor:
    """Unit-normalise feature vectors over the channel axis: ``f / (||f||_2 + eps)``."""
    return f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + eps)


#: the smallest image side (pixels) each LPIPS trunk's poolings accept
LPIPS_MIN_SIZE: dict[str, int] = {"alex": 31, "vgg": 16}


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with a frozen AlexNet (``net="alex"``) or VGG16 (``"vgg"``) trunk.

    ``forward(x, y)``: float images ``[B,3,H,W]`` in ``[0,1]`` -> distances ``[B]`` (0 for
    identical images; larger is more different). Gradients flow to the inputs, never to the
    weights (frozen, eval mode). Images need ``H, W >= min_size``: 31 for AlexNet (its
    stride-4 11×11 convolution and two 3×3 poolings), 16 for VGG16 (four 2×2 poolings).
    """

    shift: Tensor
    scale: Tensor

    def __init__(self, net: str = "alex", weights: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.net_name = _canonical_net(net)
        # the layers' random initialisation, which the weights below replace, is drawn with
        # torch's global random state restored afterwards: building the metric (a first LPIPS
        # score) must not shift the caller's seeded stream
        with torch.random.fork_rng(devices=[]):
            self.net = AlexTrunk() if self.net_name == "alex" else VGG16Trunk()
            for k, c in enumerate(self.net.channels):
                setattr(self, f"lin{k}", nn.Conv2d(c, 1, kernel_size=1, bias=False))
        self.min_size = LPIPS_MIN_SIZE[self.net_name]
        self.register_buffer(
            "shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False
        )
        sd = load_weights(self.net_name, weights)
        self.load_state_dict(
            {(f"net.{k}" if k.startswith("conv") else k): v for k, v in sd.items()}
        )
        self.eval()
        self.requires_grad_(False)
        # the trunk (convolutions, max-pooling) runs ~1.2x faster on a CPU channels-last
        # torch types Module.to without its memory_format keyword (it takes it at run time)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """LPIPS distance per image; ``x, y``: ``[B,3,H,W]`` in ``[0,1]`` -> ``[B]``."""
        check_pair(x, y, "LPIPS", channels=3)
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"LPIPS: images of {x.shape[-2]}x{x.shape[-1]} pixels are too small for the "
                f"{self.net_name} network (use at least {self.min_size}x{self.min_size})"
            )
        b = x.shape[0]
        nx = 1 if shared_reference(x) else b  # one reference for the batch: its features once
        h = torch.cat([x[:nx], y], dim=0).to(self.shift.dtype)
        h = ((h * 2.0 - 1.0 - self.shift) / self.scale).contiguous(
            memory_format=torch.channels_last
        )
        total = h.new_zeros(b)
        feats = self.net(h)
        for k, f in enumerate(feats):
            f = normalize_channels(f)
            d = (f[:nx] - f[nx:]) ** 2
            total = total + getattr(self, f"lin{k}")(d).mean(dim=(1, 2, 3))
        return total
