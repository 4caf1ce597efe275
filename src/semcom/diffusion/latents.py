"""Clean training latents of a frozen codec, cached once, served as random crops.

Encoding every training crop through the codec each step would dominate CPU training, so the
whole images of a data set are encoded once (plus their horizontal mirrors) and saved as one
safetensors file; training then takes random latent crops. Each whole latent is normalised to unit
power per real value before it is cropped (the transmitter normalises every whole image the same
way, README "Conventions"; :class:`LatentCrops`), so the training latents have ``P0 = 1`` by
construction; :func:`measure_p0` reports the measured value that goes into the denoiser card.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from ..codecs.base import Codec
from ..paths import atomic_path


def encode_images(
    codec: Codec,
    dataset: Dataset,
    flips: bool = True,
    snr_db: float | None = None,
    progress: bool = True,
) -> list[Tensor]:
    """Encode every image of ``dataset`` ([3, H, W] items) -> list of latents [C, h, w] (float32).

    ``flips`` also encodes each horizontally mirrored image. ``snr_db`` is passed to
    SNR-adaptive codecs.
    """
    out: list[Tensor] = []
    n = len(dataset)  # type: ignore[arg-type]
    with torch.inference_mode():
        for i in tqdm(range(n), desc=f"encode {codec.name}", disable=not progress, leave=False):
            x = dataset[i].unsqueeze(0)
            batch = torch.cat([x, x.flip(-1)]) if flips else x
            snr = None if snr_db is None else torch.full((batch.shape[0],), float(snr_db))
            lat = codec.encode(batch, snr)
            out.extend(t.float().clone() for t in lat)
    return out


def save_latents(latents: list[Tensor], path: str | os.PathLike[str], meta: dict[str, str]) -> Path:
    """Atomically write latents (variable sizes allowed) to one safetensors file."""
    path = Path(path)
    tensors = {f"{i:06d}": t.contiguous() for i, t in enumerate(latents)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_latents(path: str | os.PathLike[str]) -> list[Tensor]:
    """Read the latents written by :func:`save_latents`, in order."""
    d = load_file(str(path))
    return [d[k] for k in sorted(d)]


def item_rms(x: Tensor) -> Tensor:
    """Root mean square per real value of each item of ``x`` [B, ...] -> [B, 1, ...] (same
    dimensions, broadcastable over ``x``), at least 1e-6: the divisor of :func:`unit_power`."""
    dims = tuple(range(1, x.dim()))
    return x.pow(2).mean(dim=dims, keepdim=True).clamp_min(1e-12).sqrt()


def unit_power(x: Tensor) -> Tensor:
    """Normalise each item of ``x`` [B, ...] to unit mean square per real value."""
    return x / item_rms(x)


def measure_p0(latents: list[Tensor]) -> float:
    """Mean power per real value of the unit-normalised training latents (1 up to rounding)."""
    return float(np.mean([unit_power(t.unsqueeze(0)).pow(2).mean().item() for t in latents]))


class LatentCrops(Dataset):
    """Random ``crop`` x ``crop`` crops of whole latents normalised to unit power per image.

    The *whole* latent is normalised first and then cropped (not each crop on its own): the
    transmitter normalises whole images, so local power varies across a received latent and the
    denoiser must see the same statistics in training. Deterministic per (seed, epoch). Item
    ``i`` comes from latent ``i % len(latents)``; ``repeats`` makes one epoch visit every latent
    several times. Latents smaller than the crop are padded by reflection (by replication
    when the padding is as large as the latent's side or larger, which reflection cannot do).

    Holds the given latents themselves (no copy) and their RMS (:func:`item_rms`, ``rms``
    ``[N]``), and divides each crop by its latent's RMS when it is taken: the same values, to
    the bit, as cropping the normalised whole latent (:func:`unit_power`), without a second
    copy of the training set in memory.
    """

    def __init__(
        self, latents: list[Tensor], crop: int | None, seed: int = 0, repeats: int = 1
    ) -> None:
        if not latents:
            raise ValueError("LatentCrops needs at least one latent")
        self.latents = list(latents)
        # as Python floats first (exact for float32 and float64): a small tensor kept per
        # latent between the large temporaries of item_rms fragmented the heap (measured: RSS
        # up to 0.8x the latents' size higher)
        rms = [float(item_rms(t.unsqueeze(0))) for t in self.latents]
        #: [N] float64: latent i's RMS per real value (its crops are divided by it; a float32
        #: crop by a 0-dim float64 divisor computes in float32, as unit_power does)
        self.rms = torch.tensor(rms, dtype=torch.float64)
        self._rms = self.rms.unbind()  # 0-dim views: indexing rms per item costs a division
        self.crop = crop
        self.seed = int(seed)
        self.repeats = int(repeats)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s random crops (the crops are drawn from ``(seed, epoch,
        index)``; the training loop calls it before each epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.latents) * self.repeats

    def __getitem__(self, index: int) -> Tensor:
        """Item ``index``: a unit-power crop ``[C, crop, crop]`` (the whole latent ``[C, h, w]``
        when ``crop`` is None), a new tensor."""
        j = index % len(self.latents)
        lat = self.latents[j]
        if self.crop is not None:
            k = self.crop
            h, w = lat.shape[-2:]
            if h < k or w < k:
                ph, pw = max(0, k - h), max(0, k - w)
                # reflection needs padding < size; far smaller latents are padded by replication
                mode = "reflect" if ph < h and pw < w else "replicate"
                lat = torch.nn.functional.pad(lat.unsqueeze(0), (0, pw, 0, ph), mode=mode)[0]
                h, w = lat.shape[-2:]
            rng = np.random.default_rng((self.seed, self.epoch, index))
            top = int(rng.integers(0, h - k + 1))
            left = int(rng.integers(0, w - k + 1))
            lat = lat[:, top : top + k, left : left + k]
        # padding and cropping only move values: dividing after them is dividing before
        return lat / self._rms[j]
