"""Source coding for the separation baselines: Pillow JPEG / WebP (/ AVIF) in memory.

:func:`encode_to_budget` picks the **largest quality whose file fits a bit budget**.

* The budget counts the whole file (``8 * len(bytes)`` bits). The file carries its own
  side information (JPEG/WebP/AVIF headers: size, quantisation tables, ...), so nothing
  else is needed to decode it; the chosen quality is *not* sent separately.
* File size is only *nearly* monotone in quality (small bumps exist, e.g. JPEG around
  quality 90+ or WebP presets). The search is a binary search for the largest quality
  ``q`` with ``size(q) <= budget`` under the monotone assumption (so ``size(q+1) > budget``
  holds for that ``q`` unless it is the maximum quality), followed by a short upward linear
  scan over the :data:`SCAN_AHEAD` qualities after ``q + 1`` (``q + 2`` ... ``q + 1 +
  SCAN_AHEAD``) that picks up the largest fitting quality behind a bump (a quality further
  up may then fit too: the scan is not exhaustive). Every size is computed once per image
  and cached (:class:`BudgetEncoder`), so sweeping many budgets (SNRs, MCSs) is cheap.

Images are uint8 ``H x W x 3`` arrays for the codecs; the float helpers convert from and to
the library's ``[3, H, W]`` tensors in ``[0, 1]``.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..names import available_formats

#: How many qualities after the binary-search result ``q`` and ``q + 1`` (known not to fit)
#: are also tried: ``q + 2`` ... ``q + 1 + SCAN_AHEAD`` (non-monotone sizes).
SCAN_AHEAD = 3


@dataclass(frozen=True)
class ImageFormat:
    """A Pillow image codec with its quality range.

    Attributes:
        name: ``"jpeg"``, ``"webp"`` or ``"avif"``.
        pil_format: Pillow's format name.
        q_min, q_max: quality range searched (inclusive).
        save_kw: extra keyword arguments for ``Image.save``.
    """

    name: str
    pil_format: str
    q_min: int
    q_max: int
    save_kw: tuple[tuple[str, object], ...] = ()


FORMATS: dict[str, ImageFormat] = {
    # Pillow advises against JPEG quality > 95 (huge files for no gain); optimize=True
    # builds per-image Huffman tables (standard baseline JPEG, smaller files). 4:2:0.
    "jpeg": ImageFormat("jpeg", "JPEG", 1, 95, (("optimize", True),)),
    "webp": ImageFormat("webp", "WEBP", 0, 100, (("method", 4),)),
    "avif": ImageFormat("avif", "AVIF", 0, 100, (("speed", 6),)),
}


def get_format(fmt: str) -> ImageFormat:
    """Look up a format by name (case-insensitive); raises ValueError if unavailable."""
    key = fmt.lower()
    if key not in FORMATS or key not in available_formats():
        raise ValueError(f"image format {fmt!r} not available; choose from {available_formats()}")
    return FORMATS[key]


def to_uint8_hwc(x: Tensor) -> np.ndarray:
    """``[3, H, W]`` float tensor in [0, 1] -> uint8 ``H x W x 3`` (rounded, clipped)."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected an RGB image [3, H, W], got {tuple(x.shape)}")
    a = (x.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return np.ascontiguousarray(a.permute(1, 2, 0).numpy())


def from_uint8_hwc(a: np.ndarray) -> Tensor:
    """uint8 ``H x W x 3`` -> ``[3, H, W]`` float32 tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() / 255.0


def encode(img: np.ndarray, fmt: str, quality: int) -> bytes:
    """Encode uint8 ``H x W x 3`` at ``quality`` (the format's own scale) to file bytes."""
    f = get_format(fmt)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(
        buf, format=f.pil_format, quality=int(quality), **dict(f.save_kw)
    )
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """Decode file bytes (any Pillow format) to uint8 ``H x W x 3``."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def decode_tensor(data: bytes) -> Tensor:
    """Decode file bytes to a ``[3, H, W]`` float32 tensor in [0, 1]."""
    return from_uint8_hwc(decode(data))


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (``inf`` when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


class BudgetEncoder:
    """One image in one format, with every encoded quality cached.

    Args:
        img: uint8 ``H x W x 3``.
        fmt: format name (see :data:`FORMATS`).
    """

    def __init__(self, img: np.ndarray, fmt: str) -> None:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected uint8 H x W x 3, got {img.dtype} {img.shape}")
        self.img = img
        self.format = get_format(fmt)
        self._files: dict[int, bytes] = {}
        self._psnr: dict[int, float] = {}

    def file(self, quality: int) -> bytes:
        """The encoded file at ``quality`` (cached)."""
        if quality not in self._files:
            self._files[quality] = encode(self.img, self.format.name, quality)
        return self._files[quality]

    def bits(self, quality: int) -> int:
        """File size in bits at ``quality``."""
        return 8 * len(self.file(quality))

    def psnr(self, quality: int) -> float:
        """PSNR (dB, 8-bit) of the decoded file at ``quality`` against the image."""
        if quality not in self._psnr:
            self._psnr[quality] = psnr_uint8(decode(self.file(quality)), self.img)
        return self._psnr[quality]

    def fit(self, max_bits: float) -> tuple[bytes, int] | None:
        """Largest quality whose file has at most ``max_bits`` bits: ``(bytes, quality)``.

        None when even the lowest quality does not fit. ``max_bits`` may be ``inf``.
        """
        lo, hi = self.format.q_min, self.format.q_max
        if self.bits(lo) > max_bits:
            return None
        if self.bits(hi) <= max_bits:
            return self.file(hi), hi
        # Invariant: size(lo) fits, size(hi) does not.
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.bits(mid) <= max_bits:
                lo = mid
            else:
                hi = mid
        best = lo
        for q in range(lo + 2, min(lo + 1 + SCAN_AHEAD, self.format.q_max) + 1):
            if self.bits(q) <= max_bits:
                best = q
        return self.file(best), best


def encode_to_budget(img: np.ndarray, fmt: str, max_bits: float) -> tuple[bytes, int] | None:
    """Encode uint8 ``H x W x 3`` with the largest quality whose file fits ``max_bits`` bits.

    Returns ``(file_bytes, quality)`` or None when no quality fits. See the module
    docstring for how non-monotone file sizes are handled.
    """
    return BudgetEncoder(img, fmt).fit(max_bits)


class EncoderCache:
    """A small LRU of :class:`BudgetEncoder` keyed by image content and format.

    Sweeps send the same image at many SNRs (several ``transmit`` calls); the encoders
    (and their size tables) are reused across calls.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: dict[tuple[str, str], BudgetEncoder] = {}

    def get(self, img: np.ndarray, fmt: str) -> BudgetEncoder:
        """The encoder of ``img`` (uint8 ``H x W x 3``) in format ``fmt``: the cached one when
        the same pixels were seen recently, else a new one (the least recently used one is
        evicted past ``size``)."""
        h = hashlib.blake2b(img.tobytes(), digest_size=16)
        h.update(repr(img.shape).encode())
        key = (fmt, h.hexdigest())
        enc = self._items.pop(key, None) or BudgetEncoder(img, fmt)
        self._items[key] = enc
        while len(self._items) > self.size:
            self._items.pop(next(iter(self._items)))
        return enc


__all__ = [
    "FORMATS",
    "SCAN_AHEAD",
    "BudgetEncoder",
    "EncoderCache",
    "ImageFormat",
    "available_formats",
    "decode",
    "decode_tensor",
    "encode",
    "encode_to_budget",
    "from_uint8_hwc",
    "get_format",
    "psnr_uint8",
    "to_uint8_hwc",
]
