"""What the separation schemes share: channel-use budget, CBR report, fallback image.

Budget: an ``H x W`` RGB image at CBR ``c`` gets ``N = round(c * 3 H W)`` complex channel
uses (at least 1). With estimated CSI the pilots come out of that budget: the scheme sends
the largest ``n_data`` with ``n_data + pilots(n_data) <= N`` (so the reported CBR is the
requested one to within one channel use). No other side information is charged: the
image file carries its own header (see :mod:`.source`).

Fallback: when nothing can be decoded (budget too small for any file, or any LDPC block
error) the receiver outputs the scheme's ``fallback_image`` (:class:`.capacity.CapacityScheme`,
:class:`.ldpc.LDPCScheme`) -- by default a
constant mid-grey 0.5; evaluation code may set it to the data set's mean image
(:func:`mean_fallback`; a ``[3, h, w]`` tensor, resized bilinearly to the image size, or
``[3, 1, 1]``/a float).
Fallbacks are counted in ``Transmission.info["fallbacks"]`` and per image in ``counts["fallback"]``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from ..channels import CBRReport, Channel

#: Default CBR of the separation schemes when none is given.
DEFAULT_CBR = 1 / 16


def total_channel_uses(height: int, width: int, cbr: float) -> int:
    """``round(cbr * 3 H W)`` complex channel uses (at least 1)."""
    return max(1, round(cbr * 3 * height * width))


def data_symbols(total: int, channel: Channel) -> int:
    """Largest ``n`` with ``n + channel.pilot_symbols(n) <= total`` (0 if none)."""
    lo, hi = 0, total
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid + channel.pilot_symbols(mid) <= total:
            lo = mid
        else:
            hi = mid - 1
    return lo


def budget_report(height: int, width: int, cbr: float, channel: Channel) -> CBRReport:
    """CBR report of a separation scheme: data symbols + pilots, no other side symbols."""
    n = data_symbols(total_channel_uses(height, width, cbr), channel)
    return CBRReport(
        data_symbols=n,
        pilot_symbols=channel.pilot_symbols(n),
        side_symbols=0,
        source_values=3 * height * width,
    )


def fallback_for(fallback: Tensor | float | None, height: int, width: int) -> Tensor:
    """The fallback reconstruction ``[3, H, W]`` (float32, CPU) for an ``H x W`` image."""
    if fallback is None:
        fallback = 0.5
    if not isinstance(fallback, Tensor):
        return torch.full((3, height, width), float(fallback))
    f = fallback.detach().float().cpu()
    if f.dim() == 4:
        f = f[0]
    if f.dim() != 3 or f.shape[0] != 3:
        raise ValueError(f"fallback_image must be [3, h, w], got {tuple(fallback.shape)}")
    if f.shape[1:] != (height, width):
        if f.shape[1:] == (1, 1):
            f = f.expand(3, height, width)
        else:
            f = torch.nn.functional.interpolate(
                f[None], size=(height, width), mode="bilinear", align_corners=False
            )[0]
    return f.clamp(0, 1).contiguous()


def mean_fallback(images: Iterable[Tensor]) -> tuple[Tensor, str]:
    """A ``fallback_image`` for the separation schemes: the per-pixel mean
    ``[3, H, W]`` of ``images`` (each ``[3, H, W]`` in [0, 1]) when they share one size
    ("mean image", peers' convention, e.g. CIFAR-10), else their mean colour ``[3, 1, 1]``
    ("mean colour": Kodak mixes landscape and portrait)."""
    total, colour, shapes, n = None, torch.zeros(3, dtype=torch.float64), set(), 0
    for img in images:
        x = img.double()
        shapes.add(tuple(x.shape))
        colour += x.mean(dim=(1, 2))
        n += 1
        if len(shapes) == 1:
            total = x if total is None else total + x
    if n == 0:
        raise ValueError("mean_fallback: no images")
    if len(shapes) == 1 and total is not None:
        return (total / n).float(), "mean image"
    return (colour / n).float().view(3, 1, 1), "mean colour"


def dataset_fallback(name: str, dataset, crop: int | None = None) -> tuple[Tensor, str]:
    """:func:`mean_fallback` over every image of ``dataset`` (the named data set ``name``, as
    cropped to ``crop``), computed once and then read from the data cache: keyed by the data
    set's :func:`~semcom.data.dataset_signature`, so another copy of the data (files added,
    removed or changed in size) gets its own. Reading all of CIFAR-10's test set took ~3.4 s
    per separation eval before."""
    from safetensors import safe_open

    from ..data import dataset_signature, file_tag
    from ..paths import atomic_write_files, cache_dir, safetensors_bytes

    tag = f"crop{crop}" if crop else "whole"
    key = f"{file_tag(name)}-{tag}-{dataset_signature(dataset)}"
    path = cache_dir("data") / "fallback" / f"{key}.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor("mean"), (f.metadata() or {})["kind"]
    except Exception:  # absent or unreadable (safetensors has its own errors): computed again
        pass
    mean, kind = mean_fallback(dataset[i] for i in range(len(dataset)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_files({path: safetensors_bytes({"mean": mean.contiguous()}, {"kind": kind})})
    except OSError:  # a read-only cache: computed each time
        pass
    return mean, kind


__all__ = [
    "DEFAULT_CBR",
    "budget_report",
    "data_symbols",
    "dataset_fallback",
    "fallback_for",
    "mean_fallback",
    "total_channel_uses",
]
