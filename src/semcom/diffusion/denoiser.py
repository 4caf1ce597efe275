"""Latent denoiser: a small U-Net over latent maps, conditioned on the noise level, predicting x0.

Convention (the whole of :mod:`semcom.diffusion` uses it): the network sees the VP-form noisy
latent ``x_t = sqrt(1 - v) x0 + sqrt(v) n`` with ``n ~ N(0, I)`` and the noise variance ``v`` in
(0, 1) per image, and returns an estimate of ``x0`` (same units as ``x0``; the training latents
have power ``P0`` per real value). The received latent after equalise + normalise,
``f_tilde = sqrt(1-d) f + sqrt(d) n``, is exactly this form with ``v = d`` when ``P0 = 1``.

Preconditioning (EDM-style, exact for Gaussian x0 of power P0): with ``s = (1-v) P0 + v`` the
power of ``x_t``,

    x0_hat = c_skip x_t + c_out F(x_t / sqrt(s), lambda),
    c_skip = sqrt(1-v) P0 / s,   c_out = sqrt(P0 v / s),   lambda = log((1-v) / v),

so an untrained network (``F = 0``) is the LMMSE estimator and training learns the residual
beyond it. The network is fully convolutional: any ``h, w`` works (padded internally to a
multiple of ``2 ** (len(mults) - 1)``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: noise variances are clamped to [V_MIN, V_MAX] before computing the log-SNR embedding.
V_MIN = 1e-6
V_MAX = 1.0 - 1e-6


@dataclass(frozen=True)
class DenoiserConfig:
    """Architecture of :class:`LatentUNet` (stored in checkpoint cards).

    Attributes:
        channels: latent channels ``C``; width, mults, blocks, emb_dim: the U-Net's sizes.
        p0: power per real element of the training latents (the preconditioning's ``P0``).
    """

    channels: int = 32
    width: int = 96
    mults: tuple[int, ...] = (1, 2, 2)
    blocks: int = 2
    emb_dim: int = 128
    p0: float = 1.0

    def to_dict(self) -> dict:
        """The fields as a JSON-able dict (``mults`` a list)."""
        d = asdict(self)
        d["mults"] = list(self.mults)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DenoiserConfig:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        d = dict(d)
        d["mults"] = tuple(d["mults"])
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def level_embedding(lam: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of the log-SNR ``lam`` [B] -> [B, dim] (periods 0.5 ... 500 in lam)."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(math.log(1 / 500), math.log(2.0), half, device=lam.device))
    ang = lam.float().unsqueeze(-1) * freqs * 2 * math.pi
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv x2 with FiLM (scale, shift) from the level embedding."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        # a bias=True convolution has a bias: torch types .bias Optional
        nn.init.zeros_(self.conv2.bias)  # type: ignore[arg-type]
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """``x`` [B, c_in, h, w], ``emb`` the level embedding [B, emb_dim] -> [B, c_out, h, w]
        (``skip(x)`` plus the residual branch)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class LatentUNet(nn.Module):
    """U-Net denoiser over latents ``[B, C, h, w]`` predicting ``x0`` (see module docstring).

    ``forward(x_t, v)``: ``x_t`` [B, C, h, w]; ``v`` noise variance per image, [B] (or a scalar),
    in (0, 1). Returns ``x0_hat`` [B, C, h, w].
    """

    def __init__(self, config: DenoiserConfig | None = None) -> None:
        super().__init__()
        cfg = config or DenoiserConfig()
        self.config = cfg
        w, e = cfg.width, cfg.emb_dim
        self.emb = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.inp = nn.Conv2d(cfg.channels, w, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [w]
        c = w
        for i, m in enumerate(cfg.mults):
            for _ in range(cfg.blocks):
                self.down.append(ResBlock(c, w * m, e))
                c = w * m
                skips.append(c)
            if i < len(cfg.mults) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, e), ResBlock(c, c, e)])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, m in reversed(list(enumerate(cfg.mults))):
            for _ in range(cfg.blocks + 1):
                self.up.append(ResBlock(c + skips.pop(), w * m, e))
                c = w * m
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.out_norm = _norm(c)
        self.out = nn.Conv2d(c, cfg.channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        # a bias=True convolution has a bias: torch types .bias Optional
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]

    #: memory format the convolutions' inputs are put in (see :meth:`channels_last`)
    layout: torch.memory_format = torch.contiguous_format

    @property
    def p0(self) -> float:
        """Power per real element of the training latents (``config.p0``)."""
        return self.config.p0

    def channels_last(self) -> LatentUNet:
        """Run the convolutions channels-last (weights and inputs; the output is in the
        input's layout): on a CPU ~1.1-1.4x faster, values equal to float rounding. The loaders
        of trained denoisers do so; training builds contiguous networks (its weights are then
        not contiguous: ``.contiguous()`` them for ``safetensors.torch.save``; the library's
        savers do). Returns the network."""
        # torch types Module.to without its memory_format keyword (it takes it at run time)
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.layout = torch.channels_last
        return self

    def _features(self, x: Tensor, emb: Tensor) -> Tensor:
        cfg = self.config
        h = self.inp(x)
        hs = [h]
        k = 0
        for i in range(len(cfg.mults)):
            for _ in range(cfg.blocks):
                h = self.down[k](h, emb)
                hs.append(h)
                k += 1
            if i < len(cfg.mults) - 1:
                h = self.downsample[i](h)
                hs.append(h)
        for blk in self.mid:
            h = blk(h, emb)
        k = 0
        for j, i in enumerate(reversed(range(len(cfg.mults)))):
            for _ in range(cfg.blocks + 1):
                h = self.up[k](torch.cat([h, hs.pop()], dim=1), emb)
                k += 1
            if i > 0:
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))

    def forward(self, x_t: Tensor, v: Tensor | float) -> Tensor:
        """``x0_hat`` [B, C, h, w] of VP-form ``x_t`` [B, C, h, w] (training units) at noise
        variance ``v`` per real element ([B] or one value; clamped to ``[1e-6, 1 - 1e-6]``),
        in ``x_t``'s dtype. The level and the preconditioning are computed in float32 at
        least (a half / bfloat16 network: ``1 - 1e-6`` rounds to 1 there, a log-SNR of
        -inf)."""
        if x_t.dim() != 4 or x_t.shape[1] != self.config.channels:
            raise ValueError(
                f"denoiser expects latents [B, {self.config.channels}, h, w], "
                f"got {tuple(x_t.shape)}"
            )
        b = x_t.shape[0]
        dt = torch.promote_types(x_t.dtype, torch.float32)  # float32 / float64
        v = torch.as_tensor(v, dtype=dt, device=x_t.device)
        if v.numel() == 1:
            v = v.reshape(1).expand(b)
        elif v.numel() == b:
            v = v.reshape(b)
        else:
            raise ValueError(f"noise level must be a scalar or [B] per image, got {tuple(v.shape)}")
        v = v.clamp(V_MIN, V_MAX)
        p0 = self.config.p0
        s = (1 - v) * p0 + v
        c_skip = ((1 - v).sqrt() * p0 / s).view(b, 1, 1, 1).to(x_t.dtype)
        c_out = (p0 * v / s).sqrt().view(b, 1, 1, 1).to(x_t.dtype)
        c_in = s.rsqrt().view(b, 1, 1, 1).to(x_t.dtype)
        emb = self.emb(level_embedding(torch.log((1 - v) / v), self.config.emb_dim).to(x_t.dtype))
        mult = 2 ** (len(self.config.mults) - 1)
        hh, ww = x_t.shape[-2:]
        ph, pw = (-hh) % mult, (-ww) % mult
        xin = c_in * x_t
        if ph or pw:
            xin = F.pad(xin, (0, pw, 0, ph), mode="replicate")
        out = self._features(xin.contiguous(memory_format=self.layout), emb)[..., :hh, :ww]
        return c_skip * x_t + c_out * out.contiguous()
