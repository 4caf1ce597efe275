"""Training task for the JSCC codecs (DeepJSCC, ADJSCC) on the differentiable link.

Each step: images ``x`` [B, 3, H, W] -> ``codec(x, channel, snr, g)`` (encode -> per-image
power normalisation -> channel -> MMSE equalise -> LMMSE -> decode, the exact test path of
:class:`semcom.link.AnalogLink`) -> MSE to ``x``. The training SNR is fixed (``"10"``) or
drawn uniformly per image from a range (``"-5:20"``, the ADJSCC recipe).

Validation: PSNR (:func:`semcom.metrics.psnr`, per image on 8-bit, averaged) through
``AnalogLink.transmit`` at the training SNR, or for a range at its low end, middle and
high end; the channel noise is seeded per validation batch, so numbers are comparable
between epochs and runs.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..channels import Channel, format_cbr, parse_cbr
from ..codecs.jscc import (
    ADJSCC,
    DEFAULT_WIDTH,
    MODELS,
    DeepJSCC,
    build_jscc,
    cbr_for_channels,
    channels_for_cbr,
    jscc_metadata,
)
from ..data import (
    ImageDataset,
    RepeatedCrops,
    cache_images,
    collate_images,
    get_dataset,
    image_sizes,
    split_dataset,
)
from ..fingerprint import codec_fingerprint
from ..names import LOSSES
from .engine import warn_if_validating_on_training_data

if TYPE_CHECKING:
    from ..diffusion.receiver import DiffusionReceiver
    from ..link import Receiver


def parse_snr_train(text: str | float) -> tuple[float, float]:
    """``"10"`` -> (10, 10); ``"-5:20"`` -> (-5, 20) (uniform per image), in dB."""
    s = str(text).strip()
    try:
        if ":" in s:
            lo_s, hi_s = s.split(":", 1)
            lo, hi = float(lo_s), float(hi_s)
        else:
            lo = hi = float(s)
    except ValueError as e:
        raise ValueError(f"invalid training SNR {text!r}: use e.g. 10 or -5:20 (dB)") from e
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"invalid training SNR {text!r}: need finite lo <= hi (dB)")
    return lo, hi


def default_val_snrs(lo: float, hi: float) -> list[float]:
    """Validation SNRs: the fixed training SNR, or the low end, middle and high end."""
    return [lo] if lo == hi else [lo, (lo + hi) / 2, hi]


def reconstruction_loss(x_hat: Tensor, x: Tensor, kind: str) -> tuple[Tensor, dict[str, Tensor]]:
    """Training loss of a batch of reconstructions ``[B, 3, H, W]`` in [0, 1] and its log.

    ``mse``: the batch MSE. ``psnr``: ``mean_i 10 log10(MSE_i + 1e-10)`` (dB, = minus the mean
    per-image PSNR). The log reports ``loss`` and ``psnr`` (mean per-image PSNR, dB, unrounded
    outputs) as detached 0-dim tensors (read with ``float()``; the trainer reads them all in one
    transfer, not one wait for the device each).
    """
    per_image = ((x_hat - x) ** 2).flatten(1).mean(dim=1)
    log_mse = 10 * torch.log10(per_image + 1e-10)
    loss = per_image.mean() if kind == "mse" else log_mse.mean()
    return loss, {"loss": loss.detach(), "psnr": -log_mse.detach().mean()}


def check_image_crop(ds: ImageDataset, crop: int, data: str, sample: int = 2000) -> None:
    """Refuse a training crop (image pixels, ``crop x crop``) that no image of ``data`` holds
    whole, as every crop would be mostly padding; warn when some images are smaller (they are
    padded to the crop, ``ds.pad_mode``). Looks at up to ``sample`` images spread evenly over
    the data set, by their file headers."""
    n = len(ds)
    m = min(n, sample)
    idx = sorted({round(k * (n - 1) / max(m - 1, 1)) for k in range(m)})
    sizes = [ds.image_size(i) for i in idx]
    small = sum(1 for h, w in sizes if h < crop or w < crop)
    if small == len(sizes):
        h, w = max(sizes, key=min)
        raise ValueError(
            f"--crop {crop} is larger than every image of {data} (the largest square crop one "
            f"holds is {min(h, w)}, of a {h}x{w} image): every crop would be mostly padding"
        )
    if small:
        of = f"{small} of {len(sizes)}" + (" sampled" if len(sizes) < n else "")
        warnings.warn(
            f"{of} images of {data} are smaller than --crop {crop}: they are padded "
            f"({ds.pad_mode}) to {crop}x{crop}",
            stacklevel=2,
        )


def check_batchable(ds: Dataset, name: str) -> None:
    """Refuse validation images (``ds``: an :class:`ImageDataset` or a :class:`Subset` of one:
    a held-out part, ``--val-limit``) of different sizes, read from their headers, before any
    training: they are validated in batches, which failed only after the first epoch (and lost
    it)."""
    sizes = sorted(set(image_sizes(ds)))
    if len(sizes) > 1:
        shown = ", ".join(f"{h}x{w}" for h, w in sizes[:3]) + (", ..." if len(sizes) > 3 else "")
        raise ValueError(
            f"the validation images of {name} differ in size ({shown}) and cannot be batched: "
            "give --val-crop N (centre crops) or --val-data none"
        )


@dataclass
class JSCCConfig:
    """Options of a JSCC training run (stored in ``card.json`` under ``config``).

    Attributes:
        model: ``deepjscc`` or ``adjscc``.
        cbr: channel bandwidth ratio as text (``"1/16"``); ``c = 96 * CBR``.
        width: hidden width of the codec.
        channel, csi: training channel (``awgn`` | ``rayleigh-slow`` | ``rayleigh-fast``).
        snr_train: ``"10"`` or ``"-5:20"`` (dB, uniform per image).
        data: named training data set (``semcom datasets``).
        crop: random training crop (None: full images, all of one size, e.g. CIFAR).
        flip: random horizontal flips.
        val_data: a named data set, a fraction (``"0.02"``) held out of the training data,
            ``"auto"`` (``bsds500-val`` for ``bsds500-train``, else 2 % held out) or
            ``"none"``.
        val_crop: centre crop of validation images (default: ``crop``).
        val_limit: use at most this many validation images.
        val_snrs: validation SNRs (default :func:`default_val_snrs`).
        limit: use a seeded random subset of this many training images.
        repeats: random crops of every training image per epoch (:class:`RepeatedCrops`;
            1: one pass over the images; more: longer epochs, for fast devices).
        cache_images: decode the training and validation images once and keep them in
            memory (:meth:`ImageDataset.cache`); the items, hence the run, are unchanged.
        seed: data split / subset seed (the trainer's global seed).
        init: start from these weights: a zoo name (``semcom zoo list``) or a checkpoint
            (``.safetensors`` or run folder) of the same architecture, or for an
            ``adjscc`` a ``deepjscc`` of the same CBR and width (warm start:
            :meth:`~semcom.codecs.jscc.ADJSCC.from_deepjscc`).
        behind_dm: train only the decoder, behind the diffusion receiver (the CDDM recipe):
            the encoder (from ``init``, required) is frozen and the decoder learns to decode
            the LMMSE latent together with the denoised one (a ``dm_side`` decoder whose
            denoised-latent branch starts at zero, i.e. at the plain decoder).
        denoiser: the receiver's denoiser (default: the shipped one for this codec and CBR).
        dm_steps: the receiver's K (continuous matching, denoised to the clean latent). Images
            at or above ``TUNED_SKIP_SNR_DB`` skip the denoiser, as in the ``X+dm`` scheme.
        loss: ``mse`` (the batch MSE) or ``psnr`` (minus the mean per-image PSNR, i.e. the mean
            of ``10 log10 MSE_i`` over the images: the metric we report, which weighs a dB
            gained at 20 dB like a dB gained at 0 dB when the SNR varies per image).
    """

    model: str = "deepjscc"
    cbr: str = "1/6"
    width: int = DEFAULT_WIDTH
    channel: str = "awgn"
    csi: str = "perfect"
    snr_train: str = "10"
    data: str = "cifar10-train"
    crop: int | None = None
    flip: bool = True
    val_data: str = "auto"
    val_crop: int | None = None
    val_limit: int | None = 1000
    val_snrs: list[float] = field(default_factory=list)
    limit: int | None = None
    repeats: int = 1
    cache_images: bool = False
    seed: int = 0
    init: str | None = None
    behind_dm: bool = False
    denoiser: str | None = None
    dm_steps: int = 1
    loss: str = "mse"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        self.c = channels_for_cbr(parse_cbr(self.cbr))
        self.snr_range = parse_snr_train(self.snr_train)
        if not self.val_snrs:
            self.val_snrs = default_val_snrs(*self.snr_range)
        if self.behind_dm and not self.init:
            raise ValueError("--behind-dm trains a decoder for a trained encoder: give --init")
        if self.denoiser and not self.behind_dm:
            raise ValueError("--denoiser applies with --behind-dm only")
        if int(self.repeats) < 1:
            raise ValueError(f"--repeats must be >= 1, got {self.repeats}")
        if int(self.dm_steps) < 1:
            raise ValueError(f"--dm-steps must be >= 1, got {self.dm_steps}")
        for name in ("width", "crop", "val_crop", "val_limit", "limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if not all(math.isfinite(s) for s in self.val_snrs):
            raise ValueError(f"--val-snr must be finite numbers of dB, got {self.val_snrs}")


class JSCCTask:
    """:class:`semcom.train.engine.Task` training a DeepJSCC/ADJSCC codec."""

    name = "jscc"

    def __init__(self, config: JSCCConfig) -> None:
        self.config = config
        self.channel = Channel(config.channel, csi=config.csi)
        self._split: tuple[Dataset, Dataset | None] | None = None
        self.receiver: DiffusionReceiver | None = None  # the frozen receiver of a --behind-dm run
        self.init_info: dict[str, Any] = {}
        #: the run folder being resumed (set by the trainer): its checkpoint holds every weight
        self.resume_from: Path | None = None

    # ---------------------------------------------------------------------- model
    def build_model(self) -> nn.Module:
        """The codec of the config (:func:`~semcom.codecs.jscc.build_jscc`), with ``init``'s
        weights when given (an ADJSCC warm-started from a DeepJSCC); a ``behind_dm`` run
        freezes the encoder and builds the frozen receiver."""
        cfg = self.config
        model = build_jscc(cfg.model, cfg.c, cfg.width, dm_side=cfg.behind_dm)
        if not cfg.init:
            return model
        from ..codecs.jscc import load_jscc
        from ..zoo import init_ref, resolve_weights

        # an adjscc may start from a deepjscc (the function-preserving warm start)
        warm = cfg.model == "adjscc" and not cfg.behind_dm
        try:
            ref = resolve_weights(cfg.init)
        except ValueError:
            if self.resume_from is None or cfg.behind_dm:  # behind-dm: its receiver needs it
                raise
            # resumed: the checkpoint overwrites every weight; the lineage is in its card
            card = json.loads((self.resume_from / "card.json").read_text())
            self.init_info = {k: card[k] for k in ("init", "init_fingerprint") if k in card}
            return model
        init = load_jscc(ref, model=None if warm else cfg.model, c=cfg.c, width=cfg.width)
        if init.dm_side:
            raise ValueError(f"--init {cfg.init!r} is a decoder trained behind a receiver")
        if init.name != cfg.model:
            assert isinstance(model, ADJSCC)
            model.load_state_dict(ADJSCC.from_deepjscc(init).state_dict())
        else:
            # a --behind-dm decoder starts as the plain one (its side branch is zero)
            missing, _ = model.load_state_dict(init.state_dict(), strict=False)
            assert all(k.startswith("dec_side.") for k in missing), missing
        self.init_info = {"init": init_ref(cfg.init), "init_fingerprint": codec_fingerprint(init)}
        if cfg.behind_dm:
            from ..diffusion.registry import TUNED_SKIP_SNR_DB, denoiser_file, dm_receiver
            from ..zoo import sha256_file, zoo_ref

            for name, p in model.named_parameters():
                if name.startswith("enc"):
                    p.requires_grad_(False)
            den = denoiser_file(init, cfg.model, cfg.denoiser)
            # checked against the initial codec: the denoiser models its encoder's latents
            # the receiver of the X+dm scheme, skip included (it feeds the LMMSE latent as the
            # side input from TUNED_SKIP_SNR_DB up): the decoder learns what it will be served
            self.receiver = dm_receiver(
                init, cfg.model, den, "cpu", steps=int(cfg.dm_steps), skip_snr_db=TUNED_SKIP_SNR_DB
            )
            self.init_info.update(
                denoiser=zoo_ref(den),
                denoiser_sha256=sha256_file(den),
                skip_snr_db=TUNED_SKIP_SNR_DB,
            )
        return model

    def _receiver_on(self, device: torch.device) -> DiffusionReceiver | None:
        """The frozen receiver, moved to ``device`` (None for a plain run)."""
        if self.receiver is not None:
            den = self.receiver.denoise
            assert isinstance(den, nn.Module)  # dm_receiver's: a loaded LatentUNet
            den.to(device)
        return self.receiver

    def model_metadata(self, model: nn.Module) -> dict[str, str]:
        """The codec's architecture (:func:`~semcom.codecs.jscc.jscc_metadata`) and
        ``task="jscc"``."""
        assert isinstance(model, DeepJSCC)
        return {**jscc_metadata(model), "task": self.name}

    # ----------------------------------------------------------------------- data
    def _datasets(self) -> tuple[Dataset, Dataset | None]:
        if self._split is not None:
            return self._split
        cfg = self.config
        train = get_dataset(cfg.data, crop=cfg.crop, random_crop=True, flip=cfg.flip, seed=cfg.seed)
        if cfg.crop is not None:
            check_image_crop(train, int(cfg.crop), cfg.data)
        val_name = cfg.val_data
        if val_name == "auto":
            val_name = "bsds500-val" if cfg.data == "bsds500-train" else "0.02"
        val_crop = cfg.val_crop or cfg.crop
        val: Dataset | None = None
        train_part: Dataset = train
        frac = _as_fraction(val_name)
        if val_name == "none":
            val = None
        elif frac is not None:
            tr, va = split_dataset(train, val_fraction=frac, seed=cfg.seed)
            # same files, centre crops, no flips (a copy avoids rescanning the folder)
            fixed = copy.copy(train)
            fixed.crop = None if val_crop is None else (int(val_crop), int(val_crop))
            fixed.random_crop, fixed.flip = False, False
            train_part, val = tr, Subset(fixed, va.indices)
        else:
            warn_if_validating_on_training_data(cfg.data, val_name, hold_out=True)
            val = get_dataset(val_name, crop=val_crop, random_crop=False, seed=cfg.seed)
        if cfg.limit is not None:
            n = len(train_part)  # type: ignore[arg-type]
            if not 1 <= cfg.limit:
                raise ValueError(f"--limit must be >= 1, got {cfg.limit}")
            g = torch.Generator().manual_seed(cfg.seed + 1)
            keep = sorted(torch.randperm(n, generator=g)[: min(cfg.limit, n)].tolist())
            train_part = Subset(train_part, keep)
        if cfg.repeats > 1:
            train_part = RepeatedCrops(train_part, cfg.repeats)
        if val is not None and cfg.val_limit is not None:
            n = len(val)
            val = Subset(val, list(range(min(n, cfg.val_limit))))
        if val is not None and val_crop is None:
            check_batchable(val, val_name if frac is None else f"{cfg.data} (held out)")
        if cfg.cache_images:  # the images in use only
            cache_images(train_part)
            if val is not None:
                cache_images(val)
        self._split = (train_part, val)
        # what --val-data resolved to ("auto": bsds500-val, or a held-out fraction), for the card
        self._val_used = (
            "none"
            if val is None
            else (f"{float(frac):g} of {cfg.data} held out" if frac is not None else val_name)
        )
        return self._split

    def train_dataset(self) -> Dataset:
        """Training images, float32 ``[3, H, W]`` in [0, 1] (random ``crop`` crops and flips;
        ``limit``, ``repeats`` and the held-out part applied)."""
        return self._datasets()[0]

    def val_dataset(self) -> Dataset | None:
        """Validation images (centre ``val_crop`` crops when set, no flips; at most
        ``val_limit``), or None for ``val_data="none"``."""
        return self._datasets()[1]

    def collate(self, items: list) -> Tensor:
        """``[3, H, W]`` items -> a batch ``[B, 3, H, W]`` (one size)."""
        return collate_images(items)

    # ----------------------------------------------------------------------- loss
    def sample_snr(self, batch: int, generator: torch.Generator, device) -> Tensor:
        """Training SNRs [B] (dB, float64): fixed, or uniform per image in the range."""
        lo, hi = self.config.snr_range
        u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
        return lo + (hi - lo) * u

    def loss(
        self, model: nn.Module, batch: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The reconstruction loss (``config.loss``) of images ``batch`` [B, 3, H, W] sent
        through ``model``'s differentiable link at the training SNRs, and logs to show."""
        snr = self.sample_snr(batch.shape[0], generator, batch.device)
        receiver = self._receiver_on(batch.device)
        x_hat = model(batch, self.channel, snr, generator, receiver=receiver)
        return reconstruction_loss(x_hat, batch, self.config.loss)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """PSNR (dB) at the validation SNRs (:func:`evaluate_codec`)."""
        dev = next(model.parameters()).device
        return evaluate_codec(
            model,
            loader,
            self.channel,
            self.config.val_snrs,
            self.config.seed,
            receiver=self._receiver_on(dev),
        )

    def _n_train_images(self) -> int:
        """Training images (not crops: a ``--repeats`` epoch holds ``repeats`` of each)."""
        train = self.train_dataset()
        if isinstance(train, RepeatedCrops):
            train = train.dataset
        return len(train)  # type: ignore[arg-type]

    def _val_used_text(self) -> str:
        """The validation data in use, with its image count (``--val-data`` resolved)."""
        _, val = self._datasets()
        n = 0 if val is None else len(val)  # type: ignore[arg-type]
        return self._val_used if val is None else f"{self._val_used} ({n} image{'s' * (n != 1)})"

    def card(self) -> dict[str, Any]:
        """The card's model, CBR, channel, training SNR and data entries (and ``init``'s
        lineage)."""
        cfg = self.config
        return {
            "model": cfg.model,
            "model_config": {"model": cfg.model, "c": cfg.c, "width": cfg.width},
            "cbr": cbr_for_channels(cfg.c),
            "cbr_str": format_cbr(cbr_for_channels(cfg.c)),
            "channel": {"name": cfg.channel, "csi": cfg.csi},
            "snr_train": cfg.snr_train,
            **({"decoder_behind_dm": self.init_info} if cfg.behind_dm else self.init_info),
            "data": {
                "train": cfg.data,
                "crop": cfg.crop,
                "val": cfg.val_data,
                "val_used": self._val_used_text(),
                "limit": cfg.limit,
                "n_train": self._n_train_images(),
                "repeats": cfg.repeats,
            },
        }


def _as_fraction(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    if not 0 < v < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {text!r}")
    return v


@torch.no_grad()
def evaluate_codec(
    codec: nn.Module,
    loader: DataLoader | list[Tensor],
    channel: Channel,
    snrs: list[float],
    seed: int = 0,
    receiver: Receiver | None = None,
) -> dict[str, float]:
    """Mean per-image PSNR (8-bit, dB) of ``codec`` through :class:`~semcom.link.AnalogLink`
    (with ``receiver``, default LMMSE) on ``[B, 3, H, W]`` batches in [0, 1] at ``snrs`` (dB).

    Returns ``{"psnr": value at snrs[len//2], "psnr@{snr}dB": ...}``; the noise of batch
    ``i`` at SNR ``s`` is seeded by ``(seed, i)``.
    """
    from ..link import AnalogLink
    from ..metrics import psnr

    assert isinstance(codec, DeepJSCC)
    if len(snrs) == 0:
        raise ValueError("snrs is empty: give at least one SNR (dB) to validate at")
    was_training = codec.training
    codec.eval()
    link = AnalogLink(codec, receiver)
    sums = dict.fromkeys((float(s) for s in snrs), 0.0)  # a repeated SNR is measured once
    n = 0
    dev = next(codec.parameters()).device
    for i, x in enumerate(loader):
        x = x.to(dev)
        for s in sums:
            g = torch.Generator(device=dev).manual_seed(seed * 100_003 + i)
            out = link.transmit(x, channel, s, g).images
            sums[s] += float(psnr(out, x).sum())
        n += x.shape[0]
    codec.train(was_training)
    if n == 0:  # a PSNR of 0 dB would pass for a measurement
        raise ValueError("no images to validate on: the loader gave no batch")
    res = {f"psnr@{s:g}dB": v / n for s, v in sums.items()}
    return {"psnr": res[f"psnr@{snrs[len(snrs) // 2]:g}dB"], **res}


__all__ = [
    "JSCCConfig",
    "JSCCTask",
    "default_val_snrs",
    "evaluate_codec",
    "parse_snr_train",
]
