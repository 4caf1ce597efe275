"""Image metrics: PSNR convention, SSIM/MS-SSIM vs references, LPIPS/DISTS regressions."""

from __future__ import annotations

import functools
import math
import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import semcom.metrics as metrics_mod
from semcom.metrics import (
    METRICS,
    PSNR_MAX_DB,
    compute_metrics,
    ms_ssim,
    ms_ssim_levels,
    psnr,
    quantize_8bit,
    ssim,
)

skmetrics = pytest.importorskip("skimage.metrics")
skdata = pytest.importorskip("skimage.data")

ONE_LEVEL_DB = 20.0 * math.log10(255.0)  # 48.1308 dB: every value one 8-bit level off


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def natural(h: int = 128, w: int = 128, name: str = "astronaut") -> torch.Tensor:
    """A natural RGB crop ``[1,3,h,w]`` float64 in [0,1] from scikit-image's bundled data."""
    arr = getattr(skdata, name)()[:h, :w, :3]
    return torch.from_numpy(arr.astype(np.float64) / 255.0).permute(2, 0, 1)[None].contiguous()


def to_hwc(t: torch.Tensor) -> np.ndarray:
    """``[3,H,W]`` tensor -> ``[H,W,3]`` float64 numpy array."""
    return t.permute(1, 2, 0).to(torch.float64).numpy()


# ---------------------------------------------------------------------------------------- PSNR
def test_psnr_is_mean_of_per_image_values_not_pooled_mse():
    x = torch.full((2, 3, 8, 8), 100 / 255)
    y = x.clone()
    y[0] += 1 / 255  # MSE 1 level^2   -> 48.13 dB
    y[1] += 10 / 255  # MSE 100 level^2 -> 28.13 dB
    vals = psnr(x, y)
    assert vals.shape == (2,)
    assert vals[0].item() == pytest.approx(ONE_LEVEL_DB, abs=1e-4)
    assert vals[1].item() == pytest.approx(ONE_LEVEL_DB - 20.0, abs=1e-4)
    per_image_mean = vals.mean().item()
    pooled = 10 * math.log10(255**2 / ((1 + 100) / 2))  # PSNR of the pooled MSE: 31.10 dB
    assert per_image_mean == pytest.approx(ONE_LEVEL_DB - 10.0, abs=1e-4)  # 38.13 dB
    assert abs(per_image_mean - pooled) > 5.0


def test_psnr_is_a_score_not_a_graph():
    """PSNR of an input that requires grad carries no autograd history (it has no useful
    gradient: 8-bit levels), so its values can be kept or turned into numpy."""
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    val = psnr(x, torch.rand(2, 3, 8, 8))
    assert not val.requires_grad and val.numpy().shape == (2,)


def test_psnr_one_level_off_everywhere():
    q = torch.randint(0, 255, (3, 3, 17, 23), generator=gen(0))
    x = q / 255.0
    y = (q + 1) / 255.0
    assert torch.allclose(psnr(x, y), torch.full((3,), ONE_LEVEL_DB), atol=1e-4)
    assert ONE_LEVEL_DB == pytest.approx(48.1308, abs=1e-4)


def test_psnr_identical_is_capped():
    x = torch.rand(2, 3, 16, 16, generator=gen(1))
    assert torch.equal(psnr(x, x), torch.full((2,), PSNR_MAX_DB))
    assert PSNR_MAX_DB == 100.0
    # Sub-quantum differences vanish after 8-bit quantisation.
    q = torch.randint(0, 256, (2, 3, 16, 16), generator=gen(2)) / 255.0
    assert torch.equal(psnr(q, (q + 0.1 / 255).clamp(0, 1)), torch.full((2,), PSNR_MAX_DB))


def test_psnr_clamps_inputs_outside_unit_range():
    x = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).expand(1, 3, 4, 2).contiguous()
    y = torch.tensor([-0.03, 1.04]).view(1, 1, 1, 2).expand(1, 3, 4, 2).contiguous()
    assert psnr(x, y).item() == PSNR_MAX_DB
    assert torch.equal(quantize_8bit(y), quantize_8bit(x))
    assert quantize_8bit(torch.tensor([-5.0, 0.5 / 255, 1.5 / 255, 2.0])).tolist() == [0, 0, 2, 255]


@pytest.mark.parametrize(
    ("scale", "shift", "expect"),
    [(255.0, 0.0, "divide by 255"), (2.0, -1.0, r"values in \[-0\.9"), (1.0, float("nan"), "NaN")],
)
def test_metrics_refuse_images_outside_unit_range(scale, shift, expect):
    """0..255 or [-1, 1] images, or NaN, would score silently wrong (psnr of 0..255 images was
    19-26 dB for one pair): every metric refuses them; a slight overshoot is clamped (above)."""
    x = torch.rand(2, 3, 16, 16, generator=gen(20))
    y = (x + 0.05 * torch.rand(x.shape, generator=gen(21))).clamp(0, 1)
    bad = y * scale + shift
    for name in ("psnr", "ssim"):
        with pytest.raises(ValueError, match=expect):
            metrics_mod.get_metric(name)(x, bad)
    # one metric name is a name, not its letters
    assert set(metrics_mod.compute_metrics(x, y, "psnr")) == {"psnr"}
    # the same pair with its range declared is fine, and scores as in [0, 1]
    assert torch.allclose(psnr(x * 255, y * 255, data_range=255.0), psnr(x, y))


def test_metrics_tolerate_a_tenth_of_the_range() -> None:
    """An overshoot of up to 10% of the range is scored (as its 8-bit, clamped version); 15%
    is refused, on either side."""
    x = torch.rand(1, 3, 16, 16, generator=gen(24))
    for value, ok in ((1.05, True), (-0.05, True), (1.15, False), (-0.15, False)):
        y = x.clone()
        y[0, 0, 0, 0] = value
        for name in ("psnr", "ssim"):
            if ok:
                assert torch.isfinite(metrics_mod.get_metric(name)(x, y)).all()
            else:
                with pytest.raises(ValueError, match=r"expected images in \[0, 1\]"):
                    metrics_mod.get_metric(name)(x, y)


def test_psnr_matches_skimage_on_uint8():
    a = torch.randint(0, 256, (4, 3, 20, 30), generator=gen(3), dtype=torch.uint8)
    noise = torch.randint(-20, 21, a.shape, generator=gen(4))
    b = (a.to(torch.int64) + noise).clamp(0, 255).to(torch.uint8)
    ours = psnr(a / 255.0, b / 255.0)
    for i in range(4):
        ref = skmetrics.peak_signal_noise_ratio(a[i].numpy(), b[i].numpy(), data_range=255)
        assert ours[i].item() == pytest.approx(ref, abs=1e-4)


def test_psnr_data_range_and_dtype():
    q = torch.randint(0, 255, (2, 3, 8, 8), generator=gen(5)).double()
    assert torch.allclose(psnr(q, q + 1, data_range=255.0), torch.full((2,), ONE_LEVEL_DB))
    with pytest.raises(ValueError):
        psnr(q.to(torch.uint8), q.to(torch.uint8))


_images = st.integers(0, 2**31 - 1).map(
    lambda s: torch.randint(0, 256, (3, 3, 6, 7), generator=gen(s)) / 255.0
)


@settings(max_examples=25, deadline=None)
@given(_images, _images, st.permutations(range(3)))
def test_psnr_symmetric_and_batch_invariant(x, y, perm):
    p = psnr(x, y)
    assert torch.equal(p, psnr(y, x))
    perm = list(perm)
    assert torch.equal(psnr(x[perm], y[perm]), p[perm])
    singles = torch.cat([psnr(x[i : i + 1], y[i : i + 1]) for i in range(3)])
    assert torch.equal(singles, p)
    assert bool(((p > 0) & (p <= PSNR_MAX_DB)).all())


# ---------------------------------------------------------------------------------------- SSIM
def _sk_ssim(x: torch.Tensor, y: torch.Tensor) -> float:
    return skmetrics.structural_similarity(
        to_hwc(x),
        to_hwc(y),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )


@pytest.mark.parametrize("kind", ["random", "astronaut", "coffee"])
def test_ssim_matches_skimage(kind):
    if kind == "random":
        x = torch.rand(1, 3, 40, 52, generator=gen(6), dtype=torch.float64)
        y = (x + 0.2 * torch.randn(x.shape, generator=gen(7), dtype=torch.float64)).clamp(0, 1)
    else:
        x = natural(96, 112, kind)
        blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
        y = (blurred + 0.05 * torch.randn(x.shape, generator=gen(8), dtype=torch.float64)).clamp(
            0, 1
        )
    xb, yb = torch.cat([x, x]), torch.cat([y, x])
    for dtype in (torch.float64, torch.float32):
        ours = ssim(xb.to(dtype), yb.to(dtype))
        assert ours.shape == (2,)
        assert ours[0].item() == pytest.approx(_sk_ssim(x[0], y[0]), abs=1e-4)
        assert ours[1].item() == pytest.approx(1.0, abs=1e-5)
    assert ours[0].item() < 0.95


def test_ssim_rejects_small_and_mismatched():
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 3, 10, 30), torch.rand(1, 3, 10, 30))
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))


# ------------------------------------------------------------------------------------- MS-SSIM
@pytest.mark.parametrize(
    ("side", "levels"),
    [(11, 1), (20, 1), (21, 2), (32, 2), (40, 2), (41, 3), (80, 3), (81, 4), (160, 4), (161, 5)],
)
def test_ms_ssim_levels_small_image_rule(side, levels):
    assert ms_ssim_levels(side, 1000) == levels
    assert ms_ssim_levels(1000, side) == levels
    assert ms_ssim_levels(512, 768) == 5


def test_ms_ssim_levels_too_small():
    with pytest.raises(ValueError):
        ms_ssim_levels(10, 500)
    with pytest.raises(ValueError):
        ms_ssim(torch.rand(1, 3, 10, 64), torch.rand(1, 3, 10, 64))


def test_ms_ssim_identical_is_one():
    for shape in [(2, 3, 32, 32), (1, 3, 170, 200)]:
        x = torch.rand(shape, generator=gen(9))
        assert torch.allclose(ms_ssim(x, x), torch.ones(shape[0]), atol=1e-5)


def test_ms_ssim_single_level_is_relu_ssim():
    x = natural(16, 18).float()
    y = (x + 0.1 * torch.randn(x.shape, generator=gen(10))).clamp(0, 1)
    assert ms_ssim_levels(16, 18) == 1
    s = ssim(x, y)
    assert 0 < s.item() < 1
    assert torch.allclose(ms_ssim(x, y), s, atol=1e-6)
    # Anti-correlated image: every channel's SSIM < 0 -> clamped to 0.
    neg = 1.0 - x
    assert ssim(x, neg).item() < 0
    assert ms_ssim(x, neg).item() == 0.0


def test_ms_ssim_clamps_a_negative_contrast_structure_term_at_a_fine_scale() -> None:
    """Fine detail inverted, coarser scales identical: ``cs < 0`` at the finest scale only,
    which the ReLU turns into an MS-SSIM of 0 (pytorch_msssim), not ``|cs|``."""
    base = natural(32, 32).float() * 0.2 + 0.4
    base = base.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)  # 2x2 blocks
    i = torch.arange(64)
    checker = ((i[:, None] + i[None, :]) % 2 * 2 - 1).float()  # +-1, zero mean per 2x2 block
    x, y = base + 0.15 * checker, base - 0.15 * checker
    assert ms_ssim_levels(64, 64) == 3
    assert ssim(x, y).item() < 0  # finest scale: anti-correlated
    pooled = torch.nn.functional.avg_pool2d
    assert torch.allclose(pooled(x, 2), pooled(y, 2), atol=1e-6)  # coarser scales: equal
    assert ms_ssim(x, y).item() == 0.0


def test_ms_ssim_decreases_with_noise():
    x = natural(176, 176).float()
    vals = [
        ms_ssim(x, (x + s * torch.randn(x.shape, generator=gen(11))).clamp(0, 1)).item()
        for s in (0.0, 0.01, 0.03, 0.1, 0.3)
    ]
    assert vals[0] == pytest.approx(1.0, abs=1e-5)
    assert all(a > b for a, b in pairwise(vals)), vals


def test_ms_ssim_matches_pytorch_msssim_five_scales():
    import pytorch_msssim as pm  # the reference (test extra)

    x = torch.cat([natural(176, 192), natural(176, 192, "coffee")]).float()
    y = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    y = (y + 0.03 * torch.randn(x.shape, generator=gen(12))).clamp(0, 1)
    assert ms_ssim_levels(176, 192) == 5
    ref = pm.ms_ssim(x, y, data_range=1.0, size_average=False)
    assert torch.allclose(ms_ssim(x, y), ref, atol=1e-5)
    ref_ssim = pm.ssim(x, y, data_range=1.0, size_average=False)
    assert torch.allclose(ssim(x, y), ref_ssim, atol=1e-5)
    # a dissimilar pair (MS-SSIM ~0.3-0.7), in float64: exactly the reference, whose five
    # weights sum to 1.0001 (renormalising them, as before, moved it by up to 4e-5)
    x64 = x.double()
    z = (0.5 * x64 + 0.5 * torch.rand(x.shape, generator=gen(15), dtype=torch.float64)).clamp(0, 1)
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    win = (g / g.sum()).reshape(1, 1, 1, 11).repeat(3, 1, 1, 1)  # the reference's, in float64
    ref = pm.ms_ssim(x64, z, data_range=1.0, size_average=False, win=win)
    got = ms_ssim(x64, z)
    assert ((got > 0.2) & (got < 0.8)).all(), got
    torch.testing.assert_close(got, ref, atol=1e-9, rtol=0)


def test_ms_ssim_odd_sizes_match_reference_downsampling():
    import pytorch_msssim as pm  # the reference (test extra)

    x = torch.rand(1, 3, 171, 165, generator=gen(13))
    y = (x + 0.1 * torch.randn(x.shape, generator=gen(14))).clamp(0, 1)
    ref = pm.ms_ssim(x, y, data_range=1.0, size_average=False)
    assert torch.allclose(ms_ssim(x, y), ref, atol=1e-5)


# ------------------------------------------------------------------------ LPIPS / DISTS (weights)
@pytest.fixture(scope="module")
def lpips_example(data_root: Path) -> dict[str, torch.Tensor]:
    from semcom.data import load_image

    folder = data_root / "lpips-example"
    if not folder.is_dir():
        pytest.skip(f"{folder} missing")
    return {n: load_image(folder / f"{n}.png")[None] for n in ("ex_ref", "ex_p0", "ex_p1")}


@pytest.fixture(scope="module")
def lpips_alex(weights_root: Path):
    from semcom.metrics.lpips import LPIPS

    return LPIPS("alex")


@pytest.fixture(scope="module")
def lpips_vgg(weights_root: Path):
    from semcom.metrics.lpips import LPIPS

    return LPIPS("vgg")


@pytest.fixture(scope="module")
def dists(weights_root: Path):
    from semcom.metrics.dists import DISTS

    return DISTS()


def _ref_pairs(ex: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """x = [ref, ref, ref], y = [p0, p1, ref]."""
    r = ex["ex_ref"]
    return torch.cat([r, r, r]), torch.cat([ex["ex_p0"], ex["ex_p1"], r])


def test_lpips_alex_official_example(lpips_alex, lpips_example):
    x, y = _ref_pairs(lpips_example)
    d = lpips_alex(x, y)
    assert d.shape == (3,)
    assert d[0].item() == pytest.approx(0.722, abs=0.002)
    assert d[1].item() == pytest.approx(0.138, abs=0.002)
    assert d[2].item() == pytest.approx(0.0, abs=1e-6)


def test_lpips_vgg_example(lpips_vgg, lpips_example):
    x, y = _ref_pairs(lpips_example)
    d = lpips_vgg(x, y)
    assert d[2].item() == pytest.approx(0.0, abs=1e-6)
    assert 0 < d[1].item() < d[0].item()
    # Regression values of this implementation (torchvision VGG16 + LPIPS v0.1 heads).
    assert d[0].item() == pytest.approx(0.5686, abs=0.002)
    assert d[1].item() == pytest.approx(0.4217, abs=0.002)


def test_lpips_frozen_and_differentiable(lpips_alex, lpips_example):
    x, y = _ref_pairs(lpips_example)
    y = y[:1].clone().requires_grad_(True)
    lpips_alex(x[:1], y).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in lpips_alex.parameters())
    assert not lpips_alex.training


def test_lpips_float64_and_small_images(lpips_alex, lpips_vgg, lpips_example):
    """float64 images score as float32 ones (were a dtype error deep in a convolution); images
    too small for a trunk's pooling get one ValueError naming the size and the smallest that
    works, down to 1x1 (AlexNet's first convolution raised a raw RuntimeError below 9x9), and
    the smallest named size does work."""
    x, y = _ref_pairs(lpips_example)
    d32 = lpips_alex(x[:1], y[:1])
    assert torch.allclose(lpips_alex(x[:1].double(), y[:1].double()), d32, atol=1e-6)
    for net, smallest in ((lpips_alex, 31), (lpips_vgg, 16)):
        for side in (1, 4, smallest - 1):
            with pytest.raises(
                ValueError,
                match=f"{side}x{side} pixels are too small.*at least {smallest}x{smallest}",
            ):
                net(x[:1, :, :side, :side], y[:1, :, :side, :side])
        d = net(x[:1, :, :smallest, :smallest], y[:1, :, :smallest, :smallest])
        assert d.shape == (1,) and torch.isfinite(d).all() and float(d) > 0
        # one side too small is enough
        with pytest.raises(ValueError, match="too small"):
            net(x[:1, :, :64, : smallest - 1], y[:1, :, :64, : smallest - 1])


def test_dists_hanning_window_and_l2pool():
    from semcom.metrics.dists import L2Pool, hanning_filter_3x3

    w = hanning_filter_3x3()
    expected = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0
    assert torch.allclose(w, expected)
    x = torch.randn(2, 4, 7, 8, generator=gen(15))
    out = L2Pool()(x)
    assert out.shape == (2, 4, 4, 4)
    # Explicit loop: zero-padded x^2, window centred on even pixels.
    xp = torch.nn.functional.pad(x * x, (1, 1, 1, 1))
    for i in range(4):
        for j in range(4):
            patch = xp[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            ref = torch.sqrt((patch * expected).sum(dim=(2, 3)) + 1e-12)
            assert torch.allclose(out[:, :, i, j], ref, atol=1e-6)
    assert len(L2Pool().state_dict()) == 0


def test_dists_weights_and_structure(dists):
    from semcom.metrics.dists import DISTS_CHANNELS, L2Pool, load_alpha_beta

    assert sum(DISTS_CHANNELS) == 1475
    assert isinstance(dists.net.pool, L2Pool)
    a, b = load_alpha_beta()
    assert a.shape == b.shape == (1, 1475, 1, 1)
    total = a.sum() + b.sum()
    assert torch.allclose(dists.alpha, a / total) and torch.allclose(dists.beta, b / total)
    assert (dists.alpha.sum() + dists.beta.sum()).item() == pytest.approx(1.0, abs=1e-6)
    feats = dists.features(torch.rand(1, 3, 48, 40, generator=gen(16)))
    assert [f.shape[1] for f in feats] == list(DISTS_CHANNELS)
    assert [tuple(f.shape[-2:]) for f in feats] == [
        (48, 40),
        (48, 40),
        (24, 20),
        (12, 10),
        (6, 5),
        (3, 3),
    ]
    assert not any(p.requires_grad for p in dists.parameters())
    assert not dists.training


def test_dists_normalises_weights_of_any_scale(dists: torch.nn.Module, tmp_path: Path) -> None:
    """alpha and beta are divided by their joint sum: a weights file scaled by 3 gives the
    same buffers (the official file sums to 1 already, so only another file tells)."""
    from semcom.metrics.dists import DISTS, load_alpha_beta

    a, b = load_alpha_beta()
    torch.save({"alpha": a * 3, "beta": b * 3}, tmp_path / "ab.pt")
    scaled = DISTS(alpha_beta=tmp_path / "ab.pt")
    assert torch.allclose(scaled.alpha, dists.alpha, rtol=1e-6, atol=0)
    assert torch.allclose(scaled.beta, dists.beta, rtol=1e-6, atol=0)


def test_dists_matches_formula_on_features(dists, lpips_example):
    """Recompute the score from the stage features with the paper's formula (uncentred cov)."""
    from semcom.metrics.dists import DISTS_CHANNELS

    x, y = _ref_pairs(lpips_example)
    fx, fy = dists.features(x), dists.features(y)
    a = torch.split(dists.alpha, DISTS_CHANNELS, dim=1)
    b = torch.split(dists.beta, DISTS_CHANNELS, dim=1)
    score = torch.ones(3, dtype=torch.float64)
    for k in range(6):
        u, v = fx[k].double(), fy[k].double()
        mu, mv = u.mean((2, 3)), v.mean((2, 3))
        vu, vv = u.var((2, 3), unbiased=False), v.var((2, 3), unbiased=False)
        cov = (u * v).mean((2, 3)) - mu * mv
        s1 = (2 * mu * mv + 1e-6) / (mu**2 + mv**2 + 1e-6)
        s2 = (2 * cov + 1e-6) / (vu + vv + 1e-6)
        score -= (a[k].flatten().double() * s1 + b[k].flatten().double() * s2).sum(1)
    assert torch.allclose(dists(x, y).double(), score, atol=1e-5)


def test_dists_example(dists, lpips_example):
    x, y = _ref_pairs(lpips_example)
    d = dists(x, y)
    assert d.shape == (3,)
    assert abs(d[2].item()) < 1e-4
    assert 0 < d[1].item() < d[0].item() < 1
    # Regression values of this implementation.
    assert d[0].item() == pytest.approx(0.3879, abs=0.002)
    assert d[1].item() == pytest.approx(0.2250, abs=0.002)


def test_dists_increases_with_noise(dists, lpips_example):
    r = lpips_example["ex_ref"]
    sigmas = (0.01, 0.03, 0.1, 0.3)
    noise = torch.randn(r.shape, generator=gen(17))
    y = torch.cat([(r + s * noise).clamp(0, 1) for s in sigmas])
    d = dists(r.expand_as(y), y).tolist()
    assert all(a < b for a, b in pairwise(d)), d
    assert d[0] > 1e-4


def test_dists_rejects_bad_inputs(dists):
    with pytest.raises(ValueError):
        dists(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 16))
    with pytest.raises(ValueError):
        dists(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError):
        dists(torch.rand(3, 32, 32), torch.rand(3, 32, 32))


def test_dists_differentiable_wrt_input(dists):
    x = torch.rand(1, 3, 32, 32, generator=gen(18))
    y = torch.rand(1, 3, 32, 32, generator=gen(19), requires_grad=True)
    dists(x, y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ compute_metrics
def test_compute_metrics_unknown_name_fails_before_computing(monkeypatch):
    calls = []

    def spy(x, y):
        calls.append(1)
        return torch.zeros(x.shape[0])

    monkeypatch.setattr(metrics_mod, "psnr", spy)
    x = torch.rand(2, 3, 16, 16)
    assert compute_metrics(x, x, ["psnr"])["psnr"].shape == (2,) and calls == [1]
    calls.clear()
    with pytest.raises(ValueError, match="bogus"):
        compute_metrics(x, x, ["psnr", "bogus"])
    assert calls == []


def test_higher_is_better_agrees_with_every_metric(weights_root: Path) -> None:
    """``HIGHER_IS_BETTER`` (the direction the paired statistics use) names the direction each
    metric really moves: a copy scores better than a noisy version."""
    x = natural(48, 48, "coffee").float()
    noisy = (x + 0.1 * torch.randn(x.shape, generator=gen(25))).clamp(0, 1)
    out = compute_metrics(torch.cat([x, x]), torch.cat([x, noisy]), METRICS)
    assert set(metrics_mod.HIGHER_IS_BETTER) == set(METRICS)
    for name, (same, worse) in out.items():
        assert (same > worse).item() == metrics_mod.HIGHER_IS_BETTER[name], name


def test_compute_metrics_shapes_and_dtype_classical():
    x = torch.rand(3, 3, 24, 24, generator=gen(20))
    y = (x + 0.05 * torch.randn(x.shape, generator=gen(21))).clamp(0, 1)
    out = compute_metrics(x, y, ["psnr", "ssim", "ms_ssim"])
    assert list(out) == ["psnr", "ssim", "ms_ssim"]
    for v in out.values():
        assert v.shape == (3,) and v.dtype == torch.float64 and v.device.type == "cpu"
    assert torch.allclose(out["psnr"], psnr(x, y).double())
    assert torch.allclose(out["ssim"], ssim(x, y).double())


def test_compute_metrics_clamps_reconstruction():
    x = torch.rand(1, 3, 16, 16, generator=gen(22))
    y = x * 1.5 - 0.25  # far outside [0,1]
    out = compute_metrics(x, y, ["psnr", "ssim"])
    c = y.clamp(0, 1)
    assert torch.allclose(out["ssim"], ssim(x, c).double())
    assert torch.allclose(out["psnr"], psnr(x, c).double())


def test_compute_metrics_refuses_images_in_another_range():
    """README: the metrics refuse 0..255 or [-1, 1] images; compute_metrics clamped them to
    [0, 1] first and scored them (PSNR ~5 dB, no error)."""
    x = torch.rand(1, 3, 16, 16, generator=gen(23))
    for y, hint in ((x * 255, "divide by 255"), ((x * 255).to(torch.uint8), "divide by 255"),
                    (x * 2 - 1, "expected images in [0, 1]")):  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(hint)):
            compute_metrics(x, y, ["psnr"])
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        compute_metrics(x, x.numpy(), ["psnr"])


def test_compute_metrics_bad_shapes():
    with pytest.raises(ValueError):
        compute_metrics(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 15), ["psnr"])
    with pytest.raises(ValueError):
        compute_metrics(torch.rand(3, 16, 16), torch.rand(3, 16, 16), ["ssim"])


def test_compute_metrics_all_networks(weights_root, lpips_example):
    x, y = _ref_pairs(lpips_example)
    out = compute_metrics(x, y, METRICS)
    assert set(out) == set(METRICS)
    for name, v in out.items():
        assert v.shape == (3,) and v.dtype == torch.float64, name
    assert out["lpips"][0].item() == pytest.approx(0.722, abs=0.002)
    assert out["psnr"][2].item() == PSNR_MAX_DB
    for name in ("lpips", "lpips_vgg", "dists"):
        assert abs(out[name][2].item()) < 1e-4 and out[name][1] < out[name][0], name


@pytest.mark.parametrize("name", ["lpips", "dists"])
def test_a_metric_network_built_on_first_use_leaves_the_global_rng(
    weights_root, name, monkeypatch
) -> None:
    """Scoring with a network metric builds it on first use (its weights loaded over its
    layers' random initialisation), as does building it directly: the caller's seeded
    ``torch`` stream must not move, as it does not for PSNR."""
    from semcom.metrics.dists import DISTS
    from semcom.metrics.lpips import LPIPS

    monkeypatch.setattr(metrics_mod, "_network", functools.cache(metrics_mod._network.__wrapped__))
    x = natural(64, 64).float()
    y = (x + 0.05 * torch.randn(x.shape, generator=gen(3))).clamp(0, 1)
    torch.manual_seed(0)
    want = torch.rand(4)
    torch.manual_seed(0)
    compute_metrics(x, y, [name])  # built here: the cache is fresh
    torch.testing.assert_close(torch.rand(4), want, rtol=0, atol=0)
    torch.manual_seed(0)
    LPIPS("vgg") if name == "lpips" else DISTS()  # built directly
    torch.testing.assert_close(torch.rand(4), want, rtol=0, atol=0)


@pytest.mark.parametrize("hw", [(64, 64), (37, 50), (170, 180)])
def test_one_reference_expanded_over_a_batch_scores_as_copies(weights_root, hw):
    """An SNR sweep sends one reference expanded over the batch (stride 0): its features and
    local statistics are computed once and broadcast, with the scores of B full copies."""
    from semcom.metrics._check import shared_reference

    x = natural(*hw).float()
    shared = x.expand(3, -1, -1, -1)
    assert shared_reference(shared) and not shared_reference(shared.contiguous())
    assert not shared_reference(x) and not shared_reference(x.expand(1, -1, -1, -1))
    y = (shared + 0.1 * torch.randn(shared.shape, generator=gen(5))).clamp(0, 1)
    names = [n for n in METRICS if min(hw) >= 64 or n not in ("lpips_vgg", "dists")]
    got, want = compute_metrics(shared, y, names), compute_metrics(shared.contiguous(), y, names)
    for n in names:
        assert torch.allclose(got[n], want[n], rtol=0, atol=1e-6), n
        assert len(set(got[n].tolist())) == 3, n  # three different reconstructions


def test_a_reconstruction_expanded_too_scores_once_per_row(weights_root):
    """Both images expanded over the batch (a reference against itself at every SNR, say):
    one score per row, each the pair's own (only the reference's work is shared)."""
    x = natural(64, 64).float()
    y = (x + 0.1 * torch.randn(x.shape, generator=gen(7))).clamp(0, 1)
    xe, ye = x.expand(3, -1, -1, -1), y.expand(3, -1, -1, -1)
    got, one = compute_metrics(xe, ye, METRICS), compute_metrics(x, y, METRICS)
    for n in METRICS:
        assert got[n].shape == (3,), n
        assert torch.allclose(got[n], one[n].expand(3), rtol=0, atol=1e-6), n
    for f in (psnr, ssim, ms_ssim):  # called directly, y is not clamped (a copy) first
        v = f(xe, ye)
        assert v.shape == (3,) and torch.allclose(v, f(x, y).expand(3), rtol=0, atol=1e-6), f


@pytest.mark.parametrize("hw", [(12, 15), (33, 40), (100, 90), (161, 170)])
def test_ssim_and_ms_ssim_in_one_pass(hw):
    """One pass gives exactly what ssim and ms_ssim give on their own (SSIM is MS-SSIM's
    first scale), and compute_metrics asked for both returns those values."""
    from semcom.metrics.ssim import ssim_and_ms_ssim

    x = natural(*hw).float().repeat(2, 1, 1, 1)
    y = (x + 0.05 * torch.randn(x.shape, generator=gen(6))).clamp(0, 1)
    s, ms = ssim_and_ms_ssim(x, y)
    assert torch.equal(s, ssim(x, y)) and torch.equal(ms, ms_ssim(x, y))
    both = compute_metrics(x, y, ["ms_ssim", "ssim"])
    assert list(both) == ["ms_ssim", "ssim"]
    assert torch.equal(both["ssim"], s.double()) and torch.equal(both["ms_ssim"], ms.double())


def test_metrics_score_each_row_against_its_own_reference(weights_root, lpips_example):
    """A batch of different references (not one expanded): row i is scored against reference
    i, exactly as alone (the shared-reference path must not take over)."""
    x, y = _ref_pairs(lpips_example)  # distinct references in rows 0 and 1
    a, b = torch.cat([x[:1], y[1:2]]), torch.cat([y[:1], x[1:2]])
    assert not torch.equal(a[0], a[1])
    both = compute_metrics(a, b, METRICS)
    for n in METRICS:
        for i in range(2):
            alone = compute_metrics(a[i : i + 1], b[i : i + 1], [n])[n]
            assert torch.allclose(both[n][i], alone[0], rtol=0, atol=1e-6), (n, i)
    # the official LPIPS-Alex values of the two pairs, each row against its own reference
    assert both["lpips"][0].item() == pytest.approx(0.722, abs=0.002)
    assert both["lpips"][1].item() == pytest.approx(0.138, abs=0.002)


# ------------------------------------------------------------------ properties (hypothesis)
@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 3),
    hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    data_range=st.sampled_from([1.0, 255.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_psnr_is_per_image_on_the_8bit_levels(b, hw, dtype, data_range, seed):
    """PSNR = ``10 log10(255^2 / MSE)`` per image of ``round(clamp(x / R, 0, 1) * 255)``
    (a slight overshoot clamped; capped at 100 dB), whatever the dtype and range: the 8-bit
    images score as the float ones, and an image against itself scores the cap."""
    g = gen(seed)
    x = (torch.rand(b, 3, *hw, generator=g, dtype=dtype) * 1.1 - 0.05) * data_range
    y = (torch.rand(b, 3, *hw, generator=g, dtype=dtype) * 1.1 - 0.05) * data_range
    y[:1] = x[:1]  # one pair of equal images: the cap

    def levels(t: torch.Tensor) -> np.ndarray:
        a = t.float().numpy() / np.float32(data_range)
        return np.round(np.clip(a, 0, 1) * np.float32(255.0)).astype(np.float64)

    mse = ((levels(x) - levels(y)) ** 2).reshape(b, -1).mean(1)
    with np.errstate(divide="ignore"):
        want = np.minimum(10 * np.log10(255.0**2 / mse), PSNR_MAX_DB)
    got = psnr(x, y, data_range=data_range)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert got[0].item() == PSNR_MAX_DB
    qx, qy = (quantize_8bit(t, data_range) / 255.0 for t in (x, y))
    assert torch.equal(psnr(qx, qy), got)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 3),
    hw=st.tuples(st.integers(11, 44), st.integers(11, 44)),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    noise=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**31 - 1),
)
def test_ssim_of_an_image_with_itself_is_one_and_symmetric(b, hw, dtype, noise, seed):
    """For any size from the 11-pixel window up (every MS-SSIM scale count): SSIM(x, x) =
    MS-SSIM(x, x) = 1, SSIM(x, y) = SSIM(y, x) <= 1, MS-SSIM in [0, 1], per image whatever the
    batch order."""
    g = gen(seed)
    x = torch.rand(b, 3, *hw, generator=g, dtype=dtype)
    y = (x + noise * torch.randn(x.shape, generator=g, dtype=dtype)).clamp(0, 1)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    ones = torch.ones(b, dtype=dtype)
    torch.testing.assert_close(ssim(x, x), ones, atol=tol, rtol=0)
    torch.testing.assert_close(ms_ssim(x, x), ones, atol=tol, rtol=0)
    s = ssim(x, y)
    torch.testing.assert_close(ssim(y, x), s, atol=tol, rtol=0)
    assert (s <= 1 + tol).all()
    ms = ms_ssim(x, y)
    assert ((ms >= 0) & (ms <= 1 + tol)).all()
    perm = torch.arange(b).flip(0)
    torch.testing.assert_close(ssim(x[perm], y[perm]), s[perm], atol=tol, rtol=0)
    torch.testing.assert_close(ms_ssim(x[perm], y[perm]), ms[perm], atol=tol, rtol=0)


@settings(max_examples=8, deadline=None)
@given(hw=st.tuples(st.integers(31, 48), st.integers(31, 48)), seed=st.integers(0, 2**31 - 1))
def test_lpips_of_an_image_with_itself_is_zero_and_symmetric(lpips_alex, hw, seed):
    """LPIPS(x, x) = 0 and LPIPS(x, y) = LPIPS(y, x) > 0 for any image size the trunk takes."""
    g = gen(seed)
    x = torch.rand(2, 3, *hw, generator=g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    assert torch.equal(lpips_alex(x, x), torch.zeros(2))
    d = lpips_alex(x, y)
    assert (d > 0).all()
    torch.testing.assert_close(lpips_alex(y, x), d, atol=1e-6, rtol=0)
