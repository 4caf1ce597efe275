"""Discriminative JSCC codecs: DeepJSCC (Bourtsoulatze et al. 2019) and ADJSCC (Xu et al. 2021).

Both are fully convolutional with 4x spatial downsampling, so an image of ``H x W``
pixels maps to a real latent ``[c, ceil(H/4), ceil(W/4)]`` and the channel bandwidth
ratio is ``CBR = (c H W / 32) / (3 H W) = c / 96`` (c = 16 -> 1/6, 8 -> 1/12, 6 -> 1/16).

Architecture (``width = w``, the paper uses ``w = 32``)::

    encoder: conv5x5/2 (3 -> w/2) PReLU, conv5x5/2 (w/2 -> w) PReLU,
             conv5x5/1 (w -> w) PReLU, conv5x5/1 (w -> w) PReLU, conv5x5/1 (w -> c)
    decoder: tconv5x5/1 (c -> w) PReLU, tconv5x5/1 (w -> w) PReLU,
             tconv5x5/1 (w -> w) PReLU, tconv5x5/2 (w -> w/2) PReLU,
             tconv5x5/2 (w/2 -> 3) sigmoid

The final encoder conv has no activation and the codec does **not** normalise power:
the transmitter (:func:`semcom.channels.pack`) does it per image. ADJSCC adds an
attention-feature (AF) module after each hidden layer (4 in the encoder, 4 in the
decoder): ``global avg-pool -> concat SNR -> FC-ReLU-FC-sigmoid -> channel scaling``.

Training goes through *exactly* the test-time path of :class:`semcom.link.AnalogLink`
(``pack -> Channel -> equalize -> LMMSE -> decode``) with gradients, see
:func:`differentiable_link` and :meth:`DeepJSCC.forward`.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..channels import (
    Channel,
    as_snr_tensor,
    decoder_snr_db,
    equalize,
    format_cbr,
    pack,
    unpad_like,
)
from ..names import JSCC_MODELS
from ..paths import card_file, checkpoint_file
from .base import Codec, crop_to

#: Default hidden width. The paper's network is w = 32 (16/32/32/32 filters); w = 64
#: trains noticeably better on CIFAR-10 at ~3x the cost and is still fine on 2 CPU cores.
DEFAULT_WIDTH = 64
#: Spatial downsampling factor of the encoder (two stride-2 convolutions).
DOWNSAMPLE = 4
#: CBR = c / CBR_DENOMINATOR for a 4x-downsampling encoder on RGB images.
CBR_DENOMINATOR = 2 * 3 * DOWNSAMPLE * DOWNSAMPLE  # 96
#: SNRs fed to the AF modules are clamped to this range (dB), so +inf (noiseless) is usable.
AF_SNR_RANGE = (-30.0, 50.0)
#: Safetensors metadata ``format`` tag of JSCC checkpoints.
CHECKPOINT_FORMAT = "semcom-jscc-v1"


# ----------------------------------------------------------------------------- CBR <-> c
def cbr_for_channels(c: int) -> float:
    """CBR of a latent with ``c`` channels at 4x downsampling: ``c / 96``."""
    return c / CBR_DENOMINATOR


def channels_for_cbr(cbr: float | str) -> int:
    """Latent channels ``c`` for a CBR (``c = 96 * CBR``; ``'1/16'`` -> 6).

    Raises ValueError when ``96 * CBR`` is not (within 0.5 %) an integer >= 1, naming the
    nearest valid CBRs.
    """
    value = float(Fraction(cbr)) if isinstance(cbr, str) else float(cbr)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"CBR must be positive, got {cbr!r}")
    c = value * CBR_DENOMINATOR
    n = round(c)
    if n >= 1 and abs(c - n) <= 5e-3 * max(c, 1.0):
        return int(n)
    cands = sorted({max(1, math.floor(c)), max(1, math.ceil(c))})
    near = ", ".join(f"{format_cbr(cbr_for_channels(k))} (c={k})" for k in cands)
    raise ValueError(
        f"CBR {format_cbr(value)} = {value:.5g} needs {c:.3g} latent channels, not an "
        f"integer (JSCC CBR = c/{CBR_DENOMINATOR}); nearest valid CBRs: {near}"
    )


# ------------------------------------------------------------------------- the channel path
def received_latent(
    latent: Tensor,
    channel: Channel,
    snr_db: float | Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """What reaches the receiver: ``latent`` [B, C, h, w] (codec units) -> per-image power
    normalisation and real->complex packing (:func:`~semcom.channels.pack`, ``E|z|^2 = 1``)
    -> ``channel`` (AWGN: ``N0 = 10^(-SNR/10)``; Rayleigh: ``y = h z + n``) -> MMSE
    equalise + normalise -> ``(f_tilde, d)``: the normalised received latent [B, C, h, w]
    (unit power) and its noise level (per image [B, 1, 1, 1] or per element). ``snr_db`` is
    a scalar or [B] tensor in dB (``inf`` = noiseless)."""
    f_tilde, d, _ = _received(latent, channel, snr_db, generator)
    return f_tilde, d


def _received(
    latent: Tensor,
    channel: Channel,
    snr_db: float | Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`received_latent` plus the SNR its decoder is told ([B] float32, dB,
    :func:`~semcom.channels.decoder_snr_db`: |h|^2 SNR under slow fading)."""
    b = latent.shape[0]
    snr = as_snr_tensor(snr_db, b, device=latent.device)
    packed = pack(latent)
    y, state = channel(packed.z, snr, generator)
    eq = equalize(y, state)
    dec_snr = decoder_snr_db(snr, state).float()
    return unpad_like(eq.f_tilde, packed), unpad_like(eq.d, packed), dec_snr


def differentiable_link(
    latent: Tensor,
    channel: Channel,
    snr_db: float | Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """What the decoder sees at test time, with gradients (training path of AnalogLink):
    ``latent`` [B, C, h, w] (codec units) through :func:`received_latent` (``snr_db`` scalar
    or [B], dB), then the LMMSE estimate ``sqrt(1 - d) f_tilde`` [B, C, h, w] in unit-power
    units.

    Identical, operation by operation, to :meth:`semcom.link.AnalogLink.transmit` with the
    default receiver and ``needs_scale=False`` (pinned by ``tests/test_jscc.py``).
    """
    f_tilde, d = received_latent(latent, channel, snr_db, generator)
    return (1.0 - d).sqrt() * f_tilde


# ---------------------------------------------------------------------------------- blocks
def _conv(n_in: int, n_out: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 5, stride=stride, padding=2)


def _tconv(n_in: int, n_out: int, stride: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(n_in, n_out, 5, stride=stride, padding=2, output_padding=stride - 1)


class AFModule(nn.Module):
    """Attention-feature module of ADJSCC (Xu et al. 2021).

    ``x`` [B, C, H, W], ``snr_db`` [B] -> ``x * s`` with channel weights
    ``s = sigmoid(FC(ReLU(FC([mean_hw(x), snr/10]))))`` [B, C, 1, 1]. The SNR is clamped to
    :data:`AF_SNR_RANGE` and divided by 10 (so typical values are O(1)).
    """

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(8, channels // 4)
        self.fc1 = nn.Linear(channels + 1, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor, snr_db: Tensor) -> Tensor:
        """``x`` [B, C, H, W] scaled per channel by its weights [B, C, 1, 1] in (0, 1), from
        ``snr_db`` ([B] or one value, dB)."""
        ctx = x.mean(dim=(2, 3))
        s = snr_db.to(x).clamp(*AF_SNR_RANGE).reshape(-1, 1) / 10.0
        s = s.expand(x.shape[0], 1)
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(torch.cat([ctx, s], dim=1)))))
        return x * w[:, :, None, None]


class DeepJSCC(Codec):
    """DeepJSCC (Bourtsoulatze, Kurka, Gunduz 2019): CNN encoder/decoder, 4x downsampling.

    Args:
        c: latent channels (CBR = c / 96, see :func:`channels_for_cbr`).
        width: hidden width ``w`` (first layer ``w // 2``); the paper is ``w = 32``.
        dm_side: a decoder trained behind the diffusion receiver, which also reads the
            denoised latent (``decode(..., side=)``, zero-initialised branch).

    ``encode``: images [B, 3, H, W] in [0, 1] (any H, W; padded to a multiple of 4) ->
    latent [B, c, ceil(H/4), ceil(W/4)] (not power-normalised). ``decode``: latent ->
    images [B, 3, H, W] in [0, 1]. ``forward(x, channel, snr_db, generator)`` is the
    differentiable end-to-end link used for training.
    """

    name = "deepjscc"
    multiple = DOWNSAMPLE
    snr_adaptive = False
    needs_scale = False

    def __init__(self, c: int, width: int = DEFAULT_WIDTH, dm_side: bool = False) -> None:
        super().__init__()
        if int(c) < 1:
            raise ValueError(f"latent channels c must be >= 1, got {c}")
        if int(width) < 2:
            raise ValueError(f"width must be >= 2, got {width}")
        self.c, self.width = int(c), int(width)
        w, w0 = self.width, max(1, self.width // 2)
        enc_dims = [(3, w0, 2), (w0, w, 2), (w, w, 1), (w, w, 1)]
        dec_dims = [(self.c, w, 1), (w, w, 1), (w, w, 1), (w, w0, 2)]
        self.enc = nn.ModuleList(_conv(i, o, s) for i, o, s in enc_dims)
        self.enc_act = nn.ModuleList(nn.PReLU(o) for _, o, _ in enc_dims)
        self.enc_out = _conv(w, self.c, 1)
        self.dec = nn.ModuleList(_tconv(i, o, s) for i, o, s in dec_dims)
        self.dec_act = nn.ModuleList(nn.PReLU(o) for _, o, _ in dec_dims)
        self.dec_out = _tconv(w0, 3, 2)
        #: a decoder trained behind the diffusion receiver also reads the denoised latent
        #: through this branch of its first layer (zero at init: the plain decoder)
        self.dm_side = bool(dm_side)
        if self.dm_side:
            self.dec_side = _tconv(self.c, w, 1)
            nn.init.zeros_(self.dec_side.weight)
            # a bias=True convolution has a bias: torch types .bias Optional
            nn.init.zeros_(self.dec_side.bias)  # type: ignore[arg-type]

    # --- hooks for ADJSCC
    def _enc_af(self, i: int, h: Tensor, snr_db: Tensor | None) -> Tensor:
        return h

    def _dec_af(self, i: int, h: Tensor, snr_db: Tensor | None) -> Tensor:
        return h

    @property
    def cbr(self) -> float:
        """Nominal CBR ``c / 96`` (exact when H and W are multiples of 4)."""
        return cbr_for_channels(self.c)

    def config(self) -> dict[str, object]:
        """Architecture description stored in checkpoints (``model``, ``c``, ``width``, and
        ``dm_side`` for a decoder trained behind the diffusion receiver)."""
        cfg: dict[str, object] = {"model": self.name, "c": self.c, "width": self.width}
        if self.dm_side:
            cfg["dm_side"] = True
        return cfg

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """``(c, ceil(height/4), ceil(width/4))``: the latent of an image of ``height`` x
        ``width`` pixels (``c`` channels, set by the CBR)."""
        return (self.c, math.ceil(height / DOWNSAMPLE), math.ceil(width / DOWNSAMPLE))

    def _encode(self, x: Tensor, snr_db: Tensor | None) -> Tensor:
        h = x.contiguous(memory_format=self.layout)
        for i, (conv, act) in enumerate(zip(self.enc, self.enc_act, strict=True)):
            h = self._enc_af(i, act(conv(h)), snr_db)
        return self.enc_out(h).contiguous()

    def decode(
        self,
        latent: Tensor,
        size: tuple[int, int],
        snr_db: Tensor | None = None,
        side: Tensor | None = None,
    ) -> Tensor:
        """Latent [B, c, h, w] -> images [B, 3, H, W] in [0, 1] cropped to ``size``. A
        ``dm_side`` decoder also takes ``side``: the denoised latent (same shape) next to the
        LMMSE estimate ``latent``."""
        if self.dm_side and side is None:
            raise ValueError(
                f"this {self.name} decoder was trained behind the diffusion receiver: decode "
                "with side=<denoised latent> (use the scheme "
                f"'{self.name}+dm')"
            )
        return crop_to(self._decode(latent, snr_db, side), size).clamp(0.0, 1.0)

    def _decode(self, latent: Tensor, snr_db: Tensor | None, side: Tensor | None = None) -> Tensor:
        h = latent.contiguous(memory_format=self.layout)
        for i, (conv, act) in enumerate(zip(self.dec, self.dec_act, strict=True)):
            pre = conv(h)
            if i == 0 and self.dm_side and side is not None:
                pre = pre + self.dec_side(side.contiguous(memory_format=self.layout))
            h = self._dec_af(i, act(pre), snr_db)
        return torch.sigmoid(self.dec_out(h)).contiguous()

    def forward(
        self,
        x: Tensor,
        channel: Channel,
        snr_db: float | Tensor,
        generator: torch.Generator | None = None,
        receiver=None,
    ) -> Tensor:
        """Differentiable link: images [B, 3, H, W] -> reconstructions [B, 3, H, W].

        ``encode -> differentiable_link -> decode``, the same computation as
        :meth:`semcom.link.AnalogLink.transmit` but with gradients. ``snr_db``: scalar or
        [B] tensor (dB). With a ``receiver`` (:class:`semcom.link.Receiver`, e.g. a
        diffusion receiver) the frozen path ``encode -> channel -> receiver`` runs without
        gradients and only the decoder learns: a decoder trained behind that receiver (a
        ``dm_side`` decoder reads the LMMSE estimate and the receiver's output).
        """
        snr = as_snr_tensor(snr_db, x.shape[0], device=x.device)
        size = (x.shape[-2], x.shape[-1])
        if receiver is None:
            latent = self.encode(x, snr.float())
            f_tilde, d, dec_snr = _received(latent, channel, snr, generator)
            return self.decode((1.0 - d).sqrt() * f_tilde, size, dec_snr)
        with torch.no_grad():
            latent = self.encode(x, snr.float())
            f_tilde, d, dec_snr = _received(latent, channel, snr, generator)
            f_hat = receiver(f_tilde, d, generator)
        if self.dm_side:
            return self.decode((1.0 - d).sqrt() * f_tilde, size, dec_snr, side=f_hat)
        return self.decode(f_hat, size, dec_snr)


class ADJSCC(DeepJSCC):
    """ADJSCC (Xu, Ai, Chen, Wu 2021): DeepJSCC + SNR attention-feature modules.

    Same shapes as :class:`DeepJSCC`; ``snr_db`` ([B] tensor, dB) is required by
    ``encode``/``decode``. One :class:`AFModule` follows each hidden layer of the encoder
    and the decoder (4 + 4).
    """

    name = "adjscc"
    snr_adaptive = True

    def __init__(self, c: int, width: int = DEFAULT_WIDTH, dm_side: bool = False) -> None:
        super().__init__(c, width, dm_side)
        # ModuleList items are typed Module (their .out_channels as Tensor | Module)
        self.enc_af = nn.ModuleList(AFModule(conv.out_channels) for conv in self.enc)  # type: ignore[arg-type]
        self.dec_af = nn.ModuleList(AFModule(conv.out_channels) for conv in self.dec)  # type: ignore[arg-type]

    @staticmethod
    def _need(snr_db: Tensor | None, h: Tensor) -> Tensor:
        if snr_db is None:
            raise ValueError("adjscc is SNR-adaptive: pass snr_db ([B] tensor, dB)")
        return as_snr_tensor(snr_db, h.shape[0], device=h.device)

    def _enc_af(self, i: int, h: Tensor, snr_db: Tensor | None) -> Tensor:
        return self.enc_af[i](h, self._need(snr_db, h))

    def _dec_af(self, i: int, h: Tensor, snr_db: Tensor | None) -> Tensor:
        return self.dec_af[i](h, self._need(snr_db, h))

    @classmethod
    def from_deepjscc(cls, src: DeepJSCC) -> ADJSCC:
        """An ADJSCC that computes exactly what the DeepJSCC ``src`` computes, at every SNR.

        The warm start for training an SNR-adaptive model from a fixed-SNR one: every
        convolution and PReLU is copied, each AF module starts constant
        (``fc2 = 0`` -> channel weight ``sigmoid(0) = 1/2``) and the layer reading its output
        gets doubled weights (biases unchanged), so ``conv(h / 2; 2 W, b) = conv(h; W, b)``.
        Training then learns the SNR dependence from the fixed-SNR solution.
        """
        if type(src) is not DeepJSCC:
            raise ValueError(f"warm start needs a plain deepjscc codec, got {src.name!r}")
        if src.dm_side:
            raise ValueError("warm start from a decoder trained behind a receiver is not defined")
        dst = cls(src.c, src.width)
        missing, unexpected = dst.load_state_dict(src.state_dict(), strict=False)
        assert not unexpected and all(k.startswith(("enc_af.", "dec_af.")) for k in missing)
        readers = [*dst.enc[1:], dst.enc_out, *dst.dec[1:], dst.dec_out]
        with torch.no_grad():
            for af, reader in zip([*dst.enc_af, *dst.dec_af], readers, strict=True):
                nn.init.zeros_(af.fc2.weight)
                nn.init.zeros_(af.fc2.bias)
                reader.weight.mul_(2.0)
        return dst


MODELS: dict[str, type[DeepJSCC]] = dict(zip(JSCC_MODELS, (DeepJSCC, ADJSCC), strict=True))


def build_jscc(model: str, c: int, width: int = DEFAULT_WIDTH, dm_side: bool = False) -> DeepJSCC:
    """Build ``model`` (``deepjscc`` | ``adjscc``) with ``c`` latent channels (``dm_side``:
    a decoder that also reads the denoised latent, see :class:`DeepJSCC`)."""
    if model not in MODELS:
        raise ValueError(f"unknown JSCC model {model!r}; choose from {', '.join(MODELS)}")
    return MODELS[model](c, width, dm_side)


# ----------------------------------------------------------------------------- checkpoints
def jscc_metadata(codec: DeepJSCC) -> dict[str, str]:
    """Safetensors metadata (strings) describing ``codec``'s architecture."""
    return {"format": CHECKPOINT_FORMAT, **{k: str(v) for k, v in codec.config().items()}}


def load_jscc(
    path: str | Path,
    model: str | None = None,
    c: int | None = None,
    width: int | None = None,
    device: str | torch.device = "cpu",
) -> DeepJSCC:
    """Load a JSCC codec from a ``.safetensors`` file (or a run folder holding
    ``model.safetensors``), checking the architecture.

    The architecture (model, c, width) comes from the file's metadata (else from a
    ``card.json`` beside it). ``model``/``c``/``width`` are what the caller expects: a
    different value raises ValueError naming the mismatch. A corrupt or truncated file
    raises ValueError too, and so does a latent model's file (a denoiser, an SNR estimator)
    and a ``device`` this machine lacks. Loading never unpickles code. Returned in eval mode,
    channels-last (:meth:`~semcom.codecs.base.Codec.channels_last`; training builds codecs
    contiguous).
    """
    from safetensors import safe_open

    from ..devices import parse_device

    device = parse_device(str(device))  # a device this machine lacks: ValueError, as --device
    p = checkpoint_file(path)
    if not p.is_file():
        raise FileNotFoundError(f"JSCC checkpoint {str(p)!r} not found")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"corrupt or unreadable checkpoint {str(p)!r}: {e}") from e
    arch: dict[str, Any] = {}  # the card's model_config (JSON) and the file's metadata
    card = card_file(p)
    if card.is_file():
        try:
            arch.update(json.loads(card.read_text()).get("model_config", {}))
        except json.JSONDecodeError as e:
            raise ValueError(f"corrupt model card {str(card)!r}: {e}") from e
    if meta.get("task", "jscc") != "jscc":  # a latent model (denoiser, SNR estimator)
        raise ValueError(
            f"checkpoint {str(p)!r} is a {meta['task']} checkpoint, not a codec (a latent "
            f"model: give it as --{meta['task']})"
        )
    arch.update({k: meta[k] for k in ("model", "c", "width", "dm_side") if k in meta})
    missing = [k for k in ("model", "c", "width") if k not in arch]
    if missing:
        raise ValueError(f"checkpoint {str(p)!r} does not describe its architecture {missing}")
    got: dict[str, Any] = {
        "model": str(arch["model"]),
        "c": int(arch["c"]),
        "width": int(arch["width"]),
    }
    want = {"model": model, "c": c, "width": width}
    for k, v in want.items():
        if v is not None and v != got[k]:
            extra = ""
            if k == "c":
                extra = (
                    f" (CBR {format_cbr(cbr_for_channels(got['c']))} in the file, "
                    f"{format_cbr(cbr_for_channels(int(v)))} requested)"
                )
            raise ValueError(
                f"checkpoint {str(p)!r} mismatch: {k} is {got[k]!r} in the file but "
                f"{v!r} was requested{extra}"
            )
    dm_side = str(arch.get("dm_side", False)) == "True"
    codec = build_jscc(got["model"], got["c"], got["width"], dm_side)
    try:
        codec.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(
            f"checkpoint {str(p)!r} does not match the {got['model']} architecture "
            f"(c={got['c']}, width={got['width']}): {e}"
        ) from e
    return codec.to(device).channels_last().eval()


__all__ = [
    "ADJSCC",
    "AF_SNR_RANGE",
    "CBR_DENOMINATOR",
    "DEFAULT_WIDTH",
    "MODELS",
    "AFModule",
    "DeepJSCC",
    "build_jscc",
    "cbr_for_channels",
    "channels_for_cbr",
    "differentiable_link",
    "jscc_metadata",
    "load_jscc",
]
