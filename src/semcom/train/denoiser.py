"""Training task of the latent diffusion denoiser (``semcom train denoiser``).

The denoiser learns ``E[x0 | x_t]`` for ``x_t = sqrt(1-v) x0 + sqrt(v) n`` over clean latents of a
frozen codec (each whole latent at unit power, then cropped, so ``P0 = 1``; the measured value is
stored in the card). The training noise level is drawn per latent from an SNR uniform in dB over
``snr_range``: ``v = P0 / (P0 + 10^(snr/10))`` (docs/math.md §1.1, k the linear SNR), so one
network serves every channel SNR. Loss: MSE on x0. Validation: MSE gain in dB over the LMMSE
estimator ``sqrt(1-v) x_t`` at a few SNRs on held-out latents (positive = the denoiser helps).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..codecs.base import Codec
from ..diffusion.checkpoint import latent_cbr_key
from ..diffusion.denoiser import DenoiserConfig, LatentUNet
from ..diffusion.latents import (
    LatentCrops,
    encode_images,
    load_latents,
    measure_p0,
    save_latents,
    unit_power,
)
from ..fingerprint import codec_fingerprint
from ..paths import cache_dir
from .engine import warn_if_validating_on_training_data


@dataclass
class LatentTaskConfig:
    """Options shared by the tasks trained on cached clean latents of a frozen codec."""

    codec: str = "vae"
    cbr: str | None = None
    data: str = "bsds500-train"
    val_data: str = "bsds500-val"
    crop: int = 16
    repeats: int = 8
    snr_range: tuple[float, float] = (-20.0, 40.0)
    val_limit: int = 50
    seed: int = 0
    #: SNRs (dB) an SNR-adaptive codec (ADJSCC) encodes each image at: its latents depend on
    #: the SNR the transmitter was told, so the training set is the mixture over these. None:
    #: the codec's training range in 5 dB steps. Must stay None for other codecs.
    encode_snrs: list[float] | None = None
    #: the codec's checkpoint (zoo name, run folder or .safetensors) instead of the shipped one
    #: for ``codec`` at ``cbr`` (a codec you trained yourself). None: the shipped one.
    codec_weights: str | None = None

    def __post_init__(self) -> None:
        for name in ("crop", "repeats", "val_limit", "width"):  # width: the subclasses'
            value = getattr(self, name, 1)
            if value < 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be >= 1, got {value}")
        if self.cbr is not None and self.codec == "vae":  # recorded, and a second cache
            raise ValueError(
                "--cbr picks a JSCC codec's checkpoint; vae is the pretrained TAEF2 (one CBR, "
                "1/12): leave --cbr out"
            )
        if self.cbr is not None and self.codec != "vae":
            from ..channels import parse_cbr

            # one spelling (0.0625, 2/32 -> 1/16): latent models are filed and found under it
            self.cbr = latent_cbr_key(self.codec, parse_cbr(self.cbr))


@dataclass
class DenoiserTaskConfig(LatentTaskConfig):
    """Options of the denoiser task (stored in the card)."""

    val_snrs: list[float] = field(default_factory=lambda: [-10.0, 0.0, 10.0])
    width: int = 64
    mults: tuple[int, ...] = (1, 2, 2)
    blocks: int = 1


def latent_cache_path(
    codec: str,
    cbr: str | None,
    data: str,
    fingerprint: str,
    snrs: Sequence[float] | None = None,
    flips: bool = True,
    dataset: Dataset | None = None,
) -> Path:
    """Where the clean latents of ``codec`` on ``data`` are cached; ``fingerprint``
    (:func:`~semcom.fingerprint.codec_fingerprint`) ties them to the codec's weights,
    so a retrained codec of the same name and CBR gets fresh latents; ``snrs``: the encoder
    SNRs of an SNR-adaptive codec; ``flips``: with mirrored copies (training sets) or
    without (validation sets), two caches of one data set. The data set (``dataset``, else
    opened here) gives its :func:`~semcom.data.dataset_signature`, which ties them to its
    files: another copy of ``data`` (files added, removed or changed) gets fresh latents."""
    from ..data import dataset_signature, file_tag, get_dataset

    tag = codec if cbr is None else f"{codec}-{cbr.replace('/', '_')}"
    if snrs:
        tag += "-snr" + "_".join(f"{s:g}" for s in snrs)
    if not flips:
        tag += "-noflip"
    sig = dataset_signature(dataset if dataset is not None else get_dataset(data))
    name = f"{tag}-{fingerprint}-{file_tag(data)}-{sig}.safetensors"
    return cache_dir("data") / "latents" / name


def default_encode_snrs(codec: str, model: Codec, ref: str | None = None) -> list[float] | None:
    """Encoder SNRs (dB) of the training latents: None for a codec that ignores the SNR,
    else its training range ``lo:hi`` (zoo or ``ref``'s card) in 5 dB steps (both ends
    included)."""
    if not getattr(model, "snr_adaptive", False):
        return None
    from ..zoo import codec_snr_train
    from .jscc import parse_snr_train

    # an SNR-adaptive codec is a JSCC one: torch types its .cbr (undeclared on Codec) as a
    # Tensor | Module attribute
    lo_f, hi_f = parse_snr_train(codec_snr_train(codec, model.cbr, ref))  # type: ignore[arg-type]
    n = math.floor((hi_f - lo_f) / 5.0 + 1e-9) + 1
    return [lo_f + 5.0 * i for i in range(n)] + ([hi_f] if lo_f + 5.0 * (n - 1) < hi_f else [])


def codec_for(name: str, cbr: str | None, device: str = "cpu", ref: str | None = None) -> Codec:
    """The frozen codec whose latents the denoiser models: the shipped ``name`` at ``cbr``,
    or the checkpoint ``ref`` (zoo name, run folder, file) of a JSCC codec."""
    if name == "vae":
        if ref is not None:
            raise ValueError("--codec vae is the pretrained TAEF2: --codec-weights does not apply")
        from ..codecs.taef2 import load_taef2

        return load_taef2(device)
    from ..channels import parse_cbr
    from ..zoo import load_codec

    return load_codec(name, parse_cbr(cbr) if cbr else None, device, ref=ref)


def get_latents(
    codec: str,
    cbr: str | None,
    data: str,
    flips: bool,
    model: Codec | None = None,
    snrs: Sequence[float] | None = None,
    progress: bool = True,
) -> tuple[list[Tensor], str]:
    """Clean latents of ``data`` through ``codec`` (encoded once, then read from the cache)
    and the codec's weight fingerprint (:func:`~semcom.fingerprint.codec_fingerprint`).
    ``model``: the codec already built by :func:`codec_for` (built here when None). ``snrs``:
    encoder SNRs (dB) of an SNR-adaptive codec; every image is encoded at each, image-major
    (image 0 at every SNR, then image 1, ...), so any prefix mixes the SNRs. ``progress``: a
    progress bar while encoding."""
    model = model if model is not None else codec_for(codec, cbr)
    adaptive = bool(getattr(model, "snr_adaptive", False))
    if adaptive and not snrs:
        raise ValueError(f"{codec} is SNR-adaptive: give the encoder SNRs (--encode-snr)")
    if snrs and not adaptive:
        raise ValueError(f"{codec} ignores the SNR: --encode-snr applies to ADJSCC only")
    fp = codec_fingerprint(model)
    from ..data import get_dataset

    dataset = get_dataset(data)  # opened once: for the cache's key and, on a miss, encoding
    path = latent_cache_path(codec, cbr, data, fp, snrs, flips, dataset)
    if path.is_file():
        return load_latents(path), fp
    meta = {"codec": codec, "cbr": str(cbr), "data": data, "flips": str(flips), "fingerprint": fp}
    if snrs:
        per_snr = [
            encode_images(model, dataset, flips=flips, snr_db=s, progress=progress) for s in snrs
        ]
        lat = [t for group in zip(*per_snr, strict=True) for t in group]
        meta["encode_snrs"] = json.dumps(list(snrs))
    else:
        lat = encode_images(model, dataset, flips=flips, progress=progress)
    save_latents(lat, path, meta)
    return lat, fp


def check_crop(latents: Sequence[Tensor], crop: int, data: str, codec: str, scale: int) -> None:
    """Refuse a training crop (latent pixels) that no latent of ``data`` holds whole: every
    crop would be mostly padding, which almost always means image pixels were meant (``scale``:
    the codec's downsampling, image pixels per latent pixel); warn when some latents are
    smaller (:class:`~semcom.diffusion.latents.LatentCrops` pads them to the crop)."""
    small = [t for t in latents if t.shape[-2] < crop or t.shape[-1] < crop]
    if small and len(small) < len(latents):
        h, w = min((t.shape[-2], t.shape[-1]) for t in small)
        warnings.warn(
            f"{len(small)} of {len(latents)} {codec} latents of {data} are smaller than "
            f"--crop {crop} (the smallest is {h}x{w}): they are padded (reflect; replicate "
            f"where that cannot) to {crop}x{crop}",
            stacklevel=2,
        )
    if len(small) < len(latents):
        return
    h, w = max((t.shape[-2], t.shape[-1]) for t in latents)
    raise ValueError(
        f"--crop {crop} is larger than every {codec} latent of {data} (the largest is {h}x{w}): "
        f"--crop counts latent pixels, {scale}x fewer than image pixels for this codec, so "
        f"{crop}x{crop} image crops are --crop {max(1, crop // scale)}"
    )


def level_for_snr(snr_db: Tensor, p0: float) -> Tensor:
    """Matched VP noise variance ``v = P0 / (P0 + k)``, ``k = 10^(snr/10)`` (linear)."""
    k = torch.pow(10.0, snr_db / 10.0)
    return p0 / (p0 + k)


class DenoiserTask:
    """:class:`semcom.train.engine.Task` training a :class:`LatentUNet` on clean latents."""

    name = "denoiser"
    #: progress bars while preparing data (the trainer sets it from ``--quiet``)
    progress = True

    def __init__(self, config: DenoiserTaskConfig) -> None:
        self.config = config
        self._train: list[Tensor] | None = None
        self._val: list[Tensor] | None = None
        self.p0 = 1.0
        self.codec_fp = ""
        self.codec_scale = 1  # image pixels per latent pixel

    def _load(self) -> None:
        if self._train is None:
            c = self.config
            # built and fingerprinted once for both sets
            model = codec_for(c.codec, c.cbr, ref=c.codec_weights)
            self.codec_scale = int(getattr(model, "multiple", 1))
            if c.cbr is None:  # the card names the CBR it was trained at (TAEF2: none)
                c.cbr = latent_cbr_key(c.codec, getattr(model, "cbr", None))
            if c.encode_snrs is None:
                c.encode_snrs = default_encode_snrs(c.codec, model, c.codec_weights)
            snrs = c.encode_snrs
            bar = self.progress
            self._train, self.codec_fp = get_latents(c.codec, c.cbr, c.data, True, model, snrs, bar)
            if c.val_data == "none":  # no validation (quick runs)
                self._val = []
            else:
                warn_if_validating_on_training_data(c.data, c.val_data, hold_out=False)
                val, _ = get_latents(c.codec, c.cbr, c.val_data, False, model, snrs, bar)
                self._val = val[: c.val_limit]
            self.p0 = measure_p0(self._train)

    def build_model(self) -> nn.Module:
        """A fresh :class:`LatentUNet` for the codec's latents (``p0`` measured on them);
        override it to train a network of your own, ``net(x_t, v) -> x0_hat``."""
        self._load()
        c = self.config
        latent_c = self._train[0].shape[0]  # type: ignore[index]
        cfg = DenoiserConfig(
            channels=latent_c, width=c.width, mults=tuple(c.mults), blocks=c.blocks, p0=self.p0
        )
        return LatentUNet(cfg)

    def model_metadata(self, model: nn.Module) -> dict[str, str]:
        """The checkpoint's metadata: the :class:`LatentUNet`'s architecture, or for a network
        of your own (a subclass's :meth:`build_model`) its class as ``network`` (its weights
        are saved and resumed; :func:`~semcom.diffusion.checkpoint.load_denoiser` refuses it,
        naming it: load them into your network)."""
        if isinstance(model, LatentUNet):
            arch = {"denoiser_config": json.dumps(model.config.to_dict())}
        else:
            arch = {"network": f"{type(model).__module__}.{type(model).__qualname__}"}
        return {
            "task": self.name,
            **arch,
            "codec": self.config.codec,
            "cbr": str(self.config.cbr),
            "codec_fingerprint": self.codec_fp,
        }

    def train_dataset(self) -> Dataset:
        """Random ``crop x crop`` crops (:class:`~semcom.diffusion.latents.LatentCrops`) of the
        clean training latents, each whole latent normalised to unit power: ``[C, crop,
        crop]``, ``repeats`` per latent and epoch."""
        self._load()
        c = self.config
        check_crop(self._train, c.crop, c.data, c.codec, self.codec_scale)  # type: ignore[arg-type]
        return LatentCrops(self._train, c.crop, seed=c.seed, repeats=c.repeats)  # type: ignore[arg-type]

    def val_dataset(self) -> Dataset | None:
        """The whole validation latents ``[C, h, w]``, unit power, normalised as they are
        taken (:class:`~semcom.diffusion.latents.LatentCrops` without a crop: no second copy
        held; None: ``--val-data none``)."""
        self._load()
        if not self._val:  # --val-data none
            return None
        return LatentCrops(self._val, None)

    def collate(self, items: list) -> Tensor:
        """Crops ``[C, crop, crop]`` -> a batch ``[B, C, crop, crop]``."""
        return torch.stack(items)

    def loss(
        self, model: nn.Module, batch: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """MSE of ``model(x_t, v)`` against the clean ``batch`` [B, C, h, w]: each item noised
        to VP form at the level ``v = P0 / (P0 + k)`` of an SNR ``k`` drawn uniformly in dB
        over ``snr_range``."""
        b = batch.shape[0]
        lo, hi = self.config.snr_range
        snr = lo + (hi - lo) * torch.rand(b, generator=generator, device=batch.device)
        v = level_for_snr(snr, self.p0).to(batch.dtype)
        n = torch.randn(batch.shape, generator=generator, device=batch.device, dtype=batch.dtype)
        vv = v.view(b, 1, 1, 1)
        x_t = (1 - vv).sqrt() * batch + vv.sqrt() * n
        mse = (model(x_t, v) - batch).pow(2).mean()
        return mse, {"loss": mse.detach()}  # a tensor: read with the loss, one host sync

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """Latent-MSE gain over the LMMSE estimate in dB, ``gain_db@{snr}dB`` per validation
        SNR (dB) and their mean ``gain_db`` (seeded noise)."""
        was = model.training
        model.eval()
        out: dict[str, float] = {}
        g = torch.Generator().manual_seed(self.config.seed + 12345)
        dev = next(model.parameters()).device
        for snr in self.config.val_snrs:
            v = float(level_for_snr(torch.tensor(snr), self.p0))
            gains = []
            for x0 in self._val:  # type: ignore[union-attr]
                x0 = unit_power(x0.unsqueeze(0))  # noise drawn on the CPU: same on any device
                x_t = math.sqrt(1 - v) * x0 + math.sqrt(v) * torch.randn(x0.shape, generator=g)
                x0, x_t = x0.to(dev), x_t.to(dev)
                lmmse = (x_t * math.sqrt(1 - v) * self.p0 / ((1 - v) * self.p0 + v) - x0).pow(2)
                net = (model(x_t, torch.tensor([v], device=dev)) - x0).pow(2)
                gains.append(10 * math.log10(float(lmmse.mean()) / float(net.mean())))
            out[f"gain_db@{snr:g}dB"] = sum(gains) / len(gains)
        out["gain_db"] = sum(out.values()) / len(out)
        model.train(was)
        return out

    def card(self) -> dict[str, Any]:
        """The card's model, codec (name, CBR, latent shape), ``p0`` and data entries."""
        self._load()
        c = self.config
        return {
            "model": "denoiser",
            "model_config": {**asdict(c), "p0": self.p0},
            "codec": {
                "name": c.codec,
                "cbr": c.cbr,
                "encode_snrs": c.encode_snrs,
                "latent_shape_train": list(
                    self._train[0].shape  # type: ignore[index]
                ),
            },
            "p0": self.p0,
            "data": {"train": c.data, "val": c.val_data, "n_latents": len(self._train)},  # type: ignore[arg-type]
        }
