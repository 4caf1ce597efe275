"""Real latent <-> complex channel symbols, with per-image power normalisation.

Conventions (README "Conventions"):

* a latent ``[B, ...]`` is flattened per image to a real block ``v`` of length ``L``
  (zero-padded to even length);
* ``f = v / rms(v)`` has unit power per real element, exactly, per image;
* complex symbols ``z_k = (f_k + j f_{k+L/2}) / sqrt(2)``, ``k = 0..L/2-1``, so the average
  energy is exactly 1 per complex symbol (``E|z|^2 = 1``) for every image, whatever the
  rest of the batch contains.

The receiver works in the ``f`` domain (unit power per real element, docs/math.md §4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PackedLatent:
    """What the transmitter sends, plus what the receiver needs to undo the packing.

    Attributes:
        z: complex symbols ``[B, M]`` (complex64 for a float32 latent, complex128 for
            float64), ``E|z|^2 = 1`` per image (``M = ceil(L/2)`` for ``L`` real values).
        rms: per-image RMS of the latent before normalisation, ``[B]`` (real units of the
            latent). Sent as side information by a ``needs_scale`` codec's link
            (:data:`~semcom.channels.SCALAR_SIDE_SYMBOLS` channel uses).
        shape: the latent's shape without the batch dimension.
    """

    z: Tensor
    rms: Tensor
    shape: tuple[int, ...]

    @property
    def n_real(self) -> int:
        """Number of real latent values per image (before padding)."""
        return math.prod(self.shape)

    @property
    def n_symbols(self) -> int:
        """Complex channel uses per image for the latent (``ceil(L/2)``)."""
        return self.z.shape[-1]


def real_to_complex(v: Tensor) -> Tensor:
    """Map real blocks ``[..., L]`` (L even) to complex ``[..., L/2]``: ``v_k + j v_{k+L/2}``."""
    if v.shape[-1] % 2:
        raise ValueError(f"real_to_complex needs an even last dimension, got {v.shape[-1]}")
    half = v.shape[-1] // 2
    return torch.complex(v[..., :half].contiguous(), v[..., half:].contiguous())


def complex_to_real(c: Tensor) -> Tensor:
    """Inverse of :func:`real_to_complex`: ``[..., M]`` complex -> ``[..., 2M]`` real."""
    return torch.cat([c.real, c.imag], dim=-1)


def normalize_power(v: Tensor) -> tuple[Tensor, Tensor]:
    """Scale each row of ``v`` [B, L] to unit power per real element.

    Returns ``(f, rms)`` with ``f = v / rms`` and ``rms = sqrt(mean(v^2))`` per row, [B].
    Exact at any scale: each row is first scaled by a power of two that brings its largest
    magnitude into ``[0.5, 1)`` (exact in floating point, so the result is bit for bit that of
    the plain formula wherever ``v^2`` neither overflows nor underflows), so a float32 row
    of 1e20 (``v^2`` overflows) or any row of RMS 1e-30 still comes out at unit power.
    An all-zero row stays zero (its rms is reported as 0); NaN passes through.
    """
    a = v.detach()  # max|v| as max(max v, -min v): no |v| temporary; NaN propagates
    top = torch.maximum(a.amax(dim=-1, keepdim=True), a.amin(dim=-1, keepdim=True).neg_())
    _, e = torch.frexp(top)  # 2**(e-1) <= max|v| < 2**e; e = 0 for a zero, NaN or inf row
    # u = v * 2**-e in two factors (2**-e alone may overflow); the second in place
    half = -(e // 2)
    s1 = torch.pow(2.0, half.to(v.dtype))
    s2 = torch.pow(2.0, (-e - half).to(v.dtype))
    u = (v * s1).mul_(s2)
    ms = u.pow(2).mean(dim=-1)
    f = u / torch.where(ms > 0, ms, 1.0).sqrt().unsqueeze(-1)  # no NaN gradient at ms = 0
    rms = ms.sqrt() / s1.squeeze(-1) / s2.squeeze(-1)
    return f, rms


def pack(latent: Tensor) -> PackedLatent:
    """Latent ``[B, ...]`` (real float32/float64; float16/bfloat16, e.g. of an encoder under
    ``torch.autocast``, is packed in float32) -> :class:`PackedLatent` with unit-energy
    complex symbols ``z`` ``[B, ceil(L/2)]`` (``L`` values per image, zero-padded to even
    length; ``TypeError`` for a complex latent, ``ValueError`` for other dtypes, an empty batch
    or image, or a 1-D tensor; a NaN latent, e.g. of a diverged training run, passes through
    for the training loop to report). Differentiable: gradients flow back to ``latent``."""
    if latent.is_complex():
        raise TypeError("pack expects a real latent; complex latents are not supported")
    if latent.dtype in (torch.float16, torch.bfloat16):  # no complex bfloat16; half's power
        latent = latent.float()  # sums overflow: the symbols are float32
    if latent.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"pack expects a floating-point latent, got {latent.dtype}")
    if latent.dim() < 2 or latent.numel() == 0:
        raise ValueError(
            f"pack expects a latent [B, ...] with B >= 1 images of >= 1 values each, got shape "
            f"{tuple(latent.shape)}"
        )
    b = latent.shape[0]
    v = latent.reshape(b, -1)
    if v.shape[-1] % 2:
        v = torch.nn.functional.pad(v, (0, 1))
    f, rms = normalize_power(v)  # over the padded block, so E|z|^2 = 1 exactly
    z = real_to_complex(f) / math.sqrt(2.0)
    return PackedLatent(z=z, rms=rms, shape=tuple(latent.shape[1:]))


def symbols_to_unit_real(z: Tensor) -> Tensor:
    """Complex ``[B, M]`` with ``E|z|^2 = 1`` -> real ``[B, 2M]`` with unit power per element."""
    return complex_to_real(z) * math.sqrt(2.0)


def unpack(f: Tensor, packed: PackedLatent) -> Tensor:
    """Unit-power real block ``f`` [B, 2M] -> latent [B, *shape] in the codec's units.

    Undoes :func:`pack`: drops the padding element and multiplies by the sent RMS.
    """
    b = f.shape[0]
    v = f[:, : packed.n_real] * packed.rms.to(f).unsqueeze(-1)
    return v.reshape(b, *packed.shape)


def unpad_like(x: Tensor, packed: PackedLatent) -> Tensor:
    """Per-element tensor ``x`` [B, 2M] (e.g. noise levels) -> [B, *shape] latent layout (the
    padding element dropped); a per-image ``x`` [B, 1] -> [B, 1, ..., 1] (broadcastable)."""
    if x.shape[-1] == 1:
        return x.reshape(x.shape[0], *([1] * len(packed.shape)))
    return x[:, : packed.n_real].reshape(x.shape[0], *packed.shape)
