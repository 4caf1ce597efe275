"""Tests of the frozen TAEF2 codec (need the real weights: set SEMCOM_WEIGHTS)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from semcom.codecs.taef2 import (
    DECODER_REL,
    ENCODER_REL,
    TAEF2Codec,
    build_decoder,
    build_encoder,
    load_sequential,
    load_taef2,
)

KODAK = Path("/work/shared/data/kodak")

# Measured (8-bit PSNR, 256x256 centre crops): kodim23 32.52 dB, kodim05 26.38 dB.
CROP_PSNR_MIN = {23: 32.52 - 0.5, 5: 26.38 - 0.5}
# Measured mean over all 24 Kodak images: 30.19 dB.
KODAK_MEAN_PSNR = 30.2


@pytest.fixture(scope="module")
def weights_root() -> Path:
    root = os.environ.get("SEMCOM_WEIGHTS")
    if not root:
        pytest.skip("SEMCOM_WEIGHTS is not set (folder containing taef2/taef2_*.pth)")
    p = Path(root)
    for rel in (ENCODER_REL, DECODER_REL):
        if not (p / rel).exists():
            pytest.skip(f"TAEF2 weights missing: {p / rel}")
    return p


@pytest.fixture(scope="module")
def codec(weights_root: Path) -> TAEF2Codec:
    return load_taef2("cpu")


def _kodak(i: int) -> torch.Tensor:
    from PIL import Image

    path = KODAK / f"kodim{i:02d}.png"
    if not path.exists():
        pytest.skip(f"Kodak image missing: {path}")
    a = np.array(Image.open(path).convert("RGB"))
    return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255


def _psnr8(x: torch.Tensor, y: torch.Tensor) -> float:
    """PSNR (dB) between 8-bit quantised versions of images in [0, 1]."""
    xq = torch.round(x.clamp(0, 1) * 255)
    yq = torch.round(y.clamp(0, 1) * 255)
    mse = ((xq - yq) ** 2).mean().item()
    return 10 * math.log10(255**2 / mse)


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    t, le = (h - size) // 2, (w - size) // 2
    return x[..., t : t + size, le : le + size]


def test_state_dicts_load_strictly(weights_root: Path, codec: TAEF2Codec) -> None:
    enc = load_sequential(build_encoder(), weights_root / ENCODER_REL)
    dec = load_sequential(build_decoder(), weights_root / DECODER_REL)
    n_enc = sum(p.numel() for p in enc.parameters())
    n_dec = sum(p.numel() for p in dec.parameters())
    assert n_enc == 1_338_528
    assert n_dec == 1_338_499
    assert all(p.dtype == torch.float32 for p in codec.parameters())
    assert not any(p.requires_grad for p in codec.parameters())
    assert not codec.training


def test_wrong_file_raises_value_error(tmp_path: Path, weights_root: Path) -> None:
    # Decoder weights into the encoder: wrong keys/shapes -> ValueError naming the file.
    bad = tmp_path / "bad.pth"
    torch.save(torch.load(weights_root / DECODER_REL, weights_only=True), bad)
    with pytest.raises(ValueError, match=r"bad\.pth"):
        load_sequential(build_encoder(), bad)


def test_shapes_odd_size(codec: TAEF2Codec) -> None:
    x = torch.rand(1, 3, 33, 17, generator=torch.Generator().manual_seed(0))
    assert codec.latent_shape(33, 17) == (32, 5, 3)
    with torch.no_grad():
        z = codec.encode(x)
        y = codec.decode(z, (33, 17))
    assert z.shape == (1, 32, 5, 3)
    assert y.shape == (1, 3, 33, 17)
    assert torch.isfinite(y).all()
    assert y.min() >= 0 and y.max() <= 1


def test_roundtrip_psnr_crops(codec: TAEF2Codec) -> None:
    for i, threshold in CROP_PSNR_MIN.items():
        x = _center_crop(_kodak(i), 256)
        psnr = _psnr8(codec.roundtrip(x), x)
        assert psnr > threshold, f"kodim{i:02d}: {psnr:.2f} dB <= {threshold:.2f} dB"


def test_vae_link_at_infinite_snr_is_the_codec_roundtrip(codec: TAEF2Codec) -> None:
    """The ``vae`` scheme sends the unit-power latent and restores its RMS (side information):
    over a noiseless channel it reproduces the codec's own round trip, images of any power."""
    from semcom.channels import Channel
    from semcom.link import AnalogLink

    assert codec.needs_scale
    x = _center_crop(_kodak(23), 64).expand(2, -1, -1, -1) * torch.tensor([0.25, 1.0]).view(
        2, 1, 1, 1
    )
    tx = AnalogLink(codec).transmit(x, Channel("awgn"), float("inf"), torch.Generator())
    torch.testing.assert_close(tx.images, codec.roundtrip(x), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_kodak_mean_psnr(codec: TAEF2Codec) -> None:
    """The mean over all 24 whole Kodak images, on every core (the suite runs one thread for
    its small ops; these large convolutions take ~1.9x less time on two: 276 s on 1 thread
    of CI's 2-core AVX2 machine)."""
    psnrs = []
    threads = torch.get_num_threads()
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    torch.set_num_threads(len(cores) if cores else os.cpu_count() or 1)
    try:
        for i in range(1, 25):
            x = _kodak(i)
            psnrs.append(_psnr8(codec.roundtrip(x), x))
    finally:
        torch.set_num_threads(threads)
    mean = float(np.mean(psnrs))
    assert abs(mean - KODAK_MEAN_PSNR) < 0.3, f"Kodak mean PSNR {mean:.3f} dB"


def test_encoder_sees_the_image_padded_to_a_multiple_of_8(codec: TAEF2Codec) -> None:
    """A 12 x 20 image is edge-padded to 16 x 24 (TAEF2 downsamples 8x) before the encoder:
    padding to a multiple of 4 only gives the same latent shape but another latent."""
    from semcom.codecs import pad_to_multiple

    x = torch.rand(1, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = codec.encoder(pad_to_multiple(x, 8)[0])
        torch.testing.assert_close(codec.encode(x), want, rtol=0, atol=1e-5)
