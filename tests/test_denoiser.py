"""Latent denoiser: U-Net + preconditioning, latent cache/crops, training task + CLI,
checkpoints (load checks, zoo export), the ``vae+dm`` scheme and ``semcom plot``."""

from __future__ import annotations

import hashlib
import json
import math
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from semcom.cli import main as semcom_main
from semcom.diffusion.checkpoint import (
    export_denoiser,
    find_denoiser,
    load_denoiser,
    read_denoiser,
)
from semcom.diffusion.denoiser import DenoiserConfig, LatentUNet, ResBlock, level_embedding
from semcom.diffusion.latents import (
    LatentCrops,
    load_latents,
    measure_p0,
    save_latents,
    unit_power,
)
from semcom.train.denoiser import (
    DenoiserTask,
    DenoiserTaskConfig,
    check_crop,
    latent_cache_path,
    level_for_snr,
)
from semcom.train.engine import TrainConfig, Trainer

C = 32  # TAEF2 latent channels: the fake "vae" latents must match for the vae+dm test
SMALL = DenoiserConfig(channels=C, width=16, mults=(1, 2), blocks=1, emb_dim=32)
REPO = Path(__file__).resolve().parents[1]


def _structured_latents(n: int, seed: int) -> list[torch.Tensor]:
    """Latents with strongly correlated channels (one spatial map times per-channel gains
    shared by every latent, train and validation), so a denoiser can learn to beat the
    per-element LMMSE estimate; variable, odd sizes."""
    gains = torch.randn(C, 1, 1, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        h, w = 6 + i % 3, 7 + (2 * i) % 5
        base = torch.randn(1, h, w, generator=g)
        out.append(3.0 * gains * base + 0.05 * torch.randn(C, h, w, generator=g))
    return out


def vae_cache_path(data: str, flips: bool = True):
    """The cache file of the TAEF2 latents of ``data`` (keyed by the weights' fingerprint)."""
    from semcom.fingerprint import codec_fingerprint
    from semcom.train.denoiser import codec_for

    fp = codec_fingerprint(codec_for("vae", None))
    return latent_cache_path("vae", None, data, fp, flips=flips)


@pytest.fixture(scope="module")
def latent_cache(weights_root, tmp_path_factory):
    """XDG_CACHE_HOME in a temp folder holding fake cached 'vae' latents (no encoding)."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        save_latents(_structured_latents(6, 0), vae_cache_path("bsds500-train"), {"codec": "vae"})
        save_latents(
            _structured_latents(3, 1), vae_cache_path("bsds500-val", False), {"codec": "vae"}
        )
        assert str(vae_cache_path("bsds500-train")).startswith(str(root))
        yield root


@pytest.fixture(scope="module")
def cli_run(latent_cache, tmp_path_factory):
    """A 3-step ``semcom train denoiser`` run on the fake latents."""
    out = tmp_path_factory.mktemp("run")
    rc = semcom_main(
        ["train", "denoiser", "--codec", "vae", "--data", "bsds500-train",
         "--val-data", "bsds500-val", "--crop", "4", "--repeats", "2", "--width", "16",
         "--snr-range=-10:20", "--batch-size", "4", "--max-steps", "3", "--epochs", "1",
         "--quiet", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def untrained_ckpt(tmp_path_factory) -> Path:
    """A zero-output-layer (= LMMSE) denoiser saved with the task's own metadata."""
    model = LatentUNet(SMALL)
    meta = DenoiserTask(DenoiserTaskConfig(codec="vae")).model_metadata(model)
    path = tmp_path_factory.mktemp("untrained") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), meta)
    return path


def _perturbed(cfg: DenoiserConfig = SMALL, seed: int = 0) -> LatentUNet:
    torch.manual_seed(seed)
    net = LatentUNet(cfg).eval()
    with torch.no_grad():
        net.out.weight.normal_(0, 0.1)
        net.out.bias.normal_(0, 0.1)
        for m in net.modules():  # the zero-init second convs of the res blocks too
            if hasattr(m, "conv2"):
                m.conv2.weight.normal_(0, 0.05)
    return net


# --------------------------------------------------------------------------- LatentUNet
@pytest.mark.parametrize("shape", [(2, C, 5, 7), (1, C, 13, 9), (1, C, 1, 1)])
def test_unet_shape_odd_sizes(shape):
    net = _perturbed(DenoiserConfig(channels=C, width=8, mults=(1, 2, 2), blocks=1, emb_dim=16))
    x = torch.randn(shape)
    with torch.no_grad():
        y = net(x, torch.full((shape[0],), 0.3))
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_channels_last_unet_gives_the_same_contiguous_output(untrained_ckpt):
    """A channels-last network (as load_denoiser returns it) denoises as the contiguous one
    does, answering a contiguous tensor; the caller's latent keeps its layout."""
    net = _perturbed(DenoiserConfig(channels=C, width=8, mults=(1, 2, 2), blocks=1, emb_dim=16))
    x = torch.randn(3, C, 13, 9, generator=torch.Generator().manual_seed(5))
    v = torch.tensor([0.2, 0.5, 0.8])
    with torch.no_grad():
        ref = net(x, v)
        net.channels_last()
        out = net(x, v)
    assert net.layout == torch.channels_last
    assert net.inp.weight.is_contiguous(memory_format=torch.channels_last)
    assert out.is_contiguous() and x.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    loaded = load_denoiser(untrained_ckpt, codec="vae")
    assert loaded.layout == torch.channels_last
    from semcom.paths import safetensors_bytes  # the library's saver takes its weights as they are

    assert safetensors_bytes(loaded.state_dict()) == safetensors_bytes(
        {k: v.contiguous() for k, v in loaded.state_dict().items()}
    )
    assert LatentUNet(SMALL).layout == torch.contiguous_format  # training builds contiguous ones


@pytest.mark.parametrize("p0", [1.0, 2.5])
def test_untrained_is_exact_lmmse(p0):
    net = LatentUNet(DenoiserConfig(channels=4, width=8, mults=(1, 2), blocks=1, p0=p0))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64)
    v = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    net = net.double()
    with torch.no_grad():
        y = net(x, v)
    c_skip = (1 - v).sqrt() * p0 / ((1 - v) * p0 + v)
    torch.testing.assert_close(y, c_skip.view(3, 1, 1, 1) * x, rtol=1e-12, atol=1e-12)
    if p0 == 1.0:  # the LMMSE estimate sqrt(1-v) x_t
        torch.testing.assert_close(y, (1 - v).sqrt().view(3, 1, 1, 1) * x)
    # a scalar level works too and equals the per-image one
    with torch.no_grad():
        torch.testing.assert_close(net(x, 0.5), net(x, torch.full((3,), 0.5, dtype=x.dtype)))


def test_conditioning_and_clamping():
    net = _perturbed()
    x = torch.randn(1, C, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = {v: net(x, torch.tensor([v])) for v in (0.0, 1e-12, 0.1, 0.5, 0.9, 1.0)}
        skip = {v: math.sqrt(1 - v) / ((1 - v) + v) for v in (0.1, 0.5)}
        # the residual F(., lambda) itself depends on the level, not only c_skip / c_out
        r1 = (out[0.1] - skip[0.1] * x) / math.sqrt(0.1)
        r5 = (out[0.5] - skip[0.5] * x) / math.sqrt(0.5)
    assert (r1 - r5).abs().max() > 1e-3
    assert r1.abs().max() > 1e-3  # the perturbation is visible
    for v, y in out.items():
        assert torch.isfinite(y).all(), v
    # v = 0 and v = 1e-12 are clamped to the same level
    torch.testing.assert_close(out[0.0], out[1e-12])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_network_stays_finite_at_the_clamped_levels(dtype: torch.dtype) -> None:
    """A half / bfloat16 network (``DiffusionReceiver`` runs it in its own dtype): the level is
    clamped and the preconditioning computed in float32, so the levels at the clamp's ends
    (``1 - 1e-6`` rounds to 1 in half precision, ``(1-v)/v`` at 1e-6 overflows float16) give
    the float32 network's output to the half's rounding, not NaN."""
    net = _perturbed()
    x = torch.randn(4, C, 6, 6, generator=torch.Generator().manual_seed(3))
    v = torch.tensor([1e-7, 1e-3, 0.5, 1.0])  # both ends clamped
    with torch.no_grad():
        want = net(x, v)
        got = net.to(dtype)(x.to(dtype), v.to(dtype))
    assert got.dtype == dtype
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), want, rtol=0.0, atol=0.1)


def test_preconditioning_scales_input_output_and_embeds_the_log_snr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``x0_hat = c_skip x_t + c_out F(x_t / sqrt(s), emb(lambda))`` with ``s = (1-v) P0 + v``,
    ``c_skip = sqrt(1-v) P0 / s``, ``c_out = sqrt(P0 v / s)``, ``lambda = ln((1-v)/v)``; levels
    down to 1e-6 are not clamped (checked at P0 = 2.5 with ``F = 1``)."""
    p0, e = 2.5, 16
    net = LatentUNet(DenoiserConfig(channels=4, width=8, mults=(1, 2), blocks=1, emb_dim=e, p0=p0))
    net = net.double()
    seen: dict[str, torch.Tensor] = {}

    def features(x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        seen["x"] = x
        return torch.ones_like(x)

    monkeypatch.setattr(net, "_features", features)
    net.emb.register_forward_hook(lambda m, i, o: seen.setdefault("emb_in", i[0]))
    x = torch.randn(3, 4, 4, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v = torch.tensor([1e-5, 0.3, 0.9], dtype=torch.float64)
    with torch.no_grad():
        y = net(x, v)
    s = ((1 - v) * p0 + v).view(3, 1, 1, 1)
    vv = v.view(3, 1, 1, 1)
    want = (1 - vv).sqrt() * p0 / s * x + (p0 * vv / s).sqrt()
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(seen["x"], x / s.sqrt(), rtol=1e-12, atol=1e-12)
    lam = torch.log((1 - v) / v)
    torch.testing.assert_close(seen["emb_in"], level_embedding(lam, e).double())


def test_level_embedding_periods() -> None:
    """Sinusoids of the log-SNR with periods 500, 50, 5 and 0.5 (``dim = 8``): sines, then
    cosines."""
    lam = torch.tensor([0.0, 0.25, -3.0])
    emb = level_embedding(lam, 8)
    freqs = torch.tensor([1 / 500, 1 / 50, 1 / 5, 2.0], dtype=torch.float64)
    ang = lam.double()[:, None] * freqs * 2 * math.pi
    want = torch.cat([ang.sin(), ang.cos()], dim=1).float()
    torch.testing.assert_close(emb, want, rtol=1e-5, atol=1e-5)
    assert emb[1, 3].item() == pytest.approx(0.0, abs=1e-5)  # lambda = 1/4, period 1/2
    assert emb[1, 7].item() == pytest.approx(-1.0, abs=1e-5)


def test_resblock_film_is_identity_at_zero_and_scales_by_one_plus() -> None:
    """FiLM: ``h = norm2(h) (1 + scale) + shift``, so a zero FiLM output leaves the block
    unmodulated."""
    torch.manual_seed(0)
    blk = ResBlock(4, 8, 6).double().eval()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    emb = torch.randn(2, 6, dtype=torch.float64)
    with torch.no_grad():
        blk.conv2.weight.normal_(0, 0.2)
        blk.film.weight.zero_()
        scale, shift = torch.linspace(-0.5, 0.5, 8), torch.linspace(0.3, -0.2, 8)
        for sc, sh in ((torch.zeros(8), torch.zeros(8)), (scale, shift)):
            blk.film.bias.copy_(torch.cat([sc, sh]))
            h = blk.norm2(blk.conv1(torch.nn.functional.silu(blk.norm1(x))))
            h = h * (1 + sc.double().view(1, 8, 1, 1)) + sh.double().view(1, 8, 1, 1)
            want = blk.skip(x) + blk.conv2(torch.nn.functional.silu(h))
            torch.testing.assert_close(blk(x, emb), want, rtol=1e-12, atol=1e-12)


def test_unet_bad_shapes():
    net = LatentUNet(SMALL)
    with pytest.raises(ValueError, match="latents"):
        net(torch.randn(1, C - 1, 4, 4), 0.5)
    with pytest.raises(ValueError, match="latents"):
        net(torch.randn(C, 4, 4), 0.5)
    with pytest.raises(ValueError, match="noise level"):
        net(torch.randn(2, C, 4, 4), torch.tensor([0.1, 0.2, 0.3]))


def test_config_roundtrip():
    cfg = DenoiserConfig(channels=8, width=16, mults=(1, 2, 4), blocks=3, emb_dim=64, p0=0.97)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert DenoiserConfig.from_dict(d) == cfg


# ------------------------------------------------------------------------------ latents
def test_unit_power_and_p0():
    x = torch.randn(4, 3, 5, 6) * torch.tensor([0.1, 1.0, 7.0, 300.0]).view(4, 1, 1, 1)
    p = unit_power(x).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(p, torch.ones(4))
    assert unit_power(torch.zeros(2, 3)).abs().max() == 0  # no division by zero
    assert measure_p0([torch.randn(3, 4, 5) * 9, torch.randn(3, 2, 2)]) == pytest.approx(1.0)


def test_save_load_roundtrip(tmp_path):
    lat = [torch.randn(4, 3, 5), torch.randn(4, 7, 2), torch.randn(4, 1, 1)]
    p = save_latents(lat, tmp_path / "sub" / "l.safetensors", {"codec": "x"})
    back = load_latents(p)
    assert len(back) == len(lat)
    for a, b in zip(lat, back, strict=True):
        assert torch.equal(a, b)
    assert not list((tmp_path / "sub").glob("*.tmp"))


def test_latent_crops():
    lat = [torch.randn(C, 9, 11) * 5, torch.randn(C, 10, 10)]
    ds = LatentCrops(lat, crop=4, seed=3, repeats=3)
    assert len(ds) == 6
    a = [ds[i] for i in range(len(ds))]
    assert all(t.shape == (C, 4, 4) for t in a)
    b = [LatentCrops(lat, crop=4, seed=3, repeats=3)[i] for i in range(len(ds))]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    ds.set_epoch(1)
    c = [ds[i] for i in range(len(ds))]
    assert any(not torch.equal(x, y) for x, y in zip(a, c, strict=True))
    ds.set_epoch(0)
    assert all(torch.equal(x, ds[i]) for i, x in enumerate(a))
    # crops come from the whole latent normalised to unit power (not per crop)
    whole = unit_power(lat[0].unsqueeze(0))[0]
    hit = any(torch.equal(a[0], whole[:, t : t + 4, s : s + 4]) for t in range(6) for s in range(8))
    assert hit
    # no crop: whole latents at unit power
    full = LatentCrops(lat, crop=None)
    assert full[0].shape == (C, 9, 11)
    assert float(full[0].pow(2).mean()) == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError):
        LatentCrops([], crop=4)


def test_latent_crops_reach_every_offset() -> None:
    """Random crops take every offset with some probability, the last row and column too."""
    lat = torch.arange(36, dtype=torch.float32).view(1, 6, 6) + 1
    ds = LatentCrops([lat], crop=4, seed=0, repeats=200)
    unit = unit_power(lat.unsqueeze(0))[0]
    offsets = set()
    for i in range(len(ds)):
        y = ds[i]
        top, left = divmod(int((y[0, 0, 0] / unit[0, 0, 0]).round().item()) - 1, 6)
        assert torch.equal(y, unit[:, top : top + 4, left : left + 4])
        offsets.add((top, left))
    assert offsets == {(t, s) for t in range(3) for s in range(3)}


def _held_bytes(*objs: object) -> int:
    """Bytes of the distinct tensor storages reachable from ``objs`` (through attributes,
    lists, tuples and dicts)."""
    seen: dict[int, int] = {}
    stack, visited = list(objs), set()
    while stack:
        o = stack.pop()
        if id(o) in visited:
            continue
        visited.add(id(o))
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        elif isinstance(o, list | tuple):
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            stack.extend(vars(o).values())
    return sum(seen.values())


def test_latent_crops_keep_no_second_copy_of_the_latents() -> None:
    """The crops data set holds the caller's latents, not a normalised copy of them (a second
    copy of the training set in memory: ~1 GB for ADJSCC on BSDS500), and its items are still
    the crops of the whole normalised latent, to the bit."""
    g = torch.Generator().manual_seed(0)
    lat = [torch.randn(C, 9 + i % 3, 11, generator=g) * 10.0 ** (i % 5 - 2) for i in range(8)]
    one_copy = _held_bytes(lat)
    for crop, dtype in ((4, torch.float32), (None, torch.float32), (None, torch.float64)):
        if dtype == torch.float64:  # its RMS in float32 was off by ~1e-7
            lat = [t.double() * 3.3 for t in lat]
            one_copy = _held_bytes(lat)
        ds = LatentCrops(lat, crop=crop, repeats=3)
        assert _held_bytes(lat, ds) - one_copy < lat[0].nbytes  # only a few numbers per latent
        for i in range(len(ds)):
            unit = unit_power(lat[i % 8].unsqueeze(0))[0]
            y = ds[i]
            assert y.dtype == dtype
            if crop is None:
                assert torch.equal(y, unit)
            else:
                h, w = unit.shape[-2:]
                assert any(
                    torch.equal(y, unit[:, t : t + 4, s : s + 4])
                    for t in range(h - 3)
                    for s in range(w - 3)
                )


def test_denoiser_task_holds_one_copy_of_its_latents(latent_cache) -> None:
    """Training and validation data sets read the task's latents: preparing them adds no
    second copy (normalised latents beside the raw ones)."""
    task = _task()
    task.progress = False
    task.build_model()
    before = _held_bytes(task)
    train, val = task.train_dataset(), task.val_dataset()
    assert before >= _held_bytes(task._train) > 0
    assert _held_bytes(task, train, val) - before < task._train[0].nbytes
    assert len(val) == len(task._val)  # type: ignore[arg-type]
    for i, x in enumerate(task._val):  # type: ignore[union-attr]
        assert torch.equal(val[i], unit_power(x.unsqueeze(0))[0])  # type: ignore[index]


def test_crop_larger_than_every_latent_is_refused():
    """``--crop`` counts latent pixels; a crop no training latent holds whole is image pixels
    by mistake (the diffusion issue's ``--crop 256`` for TAEF2 would train on padding)."""
    lat = [torch.randn(C, 41, 61), torch.randn(C, 61, 41), torch.randn(C, 8, 8)]
    with pytest.warns(UserWarning, match="1 of 3 .* padded"):  # the 8x8 one
        check_crop(lat, 41, "bsds500-train", "vae", 8)  # the largest crop some latent holds
    with pytest.raises(ValueError, match=r"largest is 61x41.*256x256 image crops are --crop 32"):
        check_crop(lat, 256, "bsds500-train", "vae", 8)
    with pytest.raises(ValueError, match="--crop 42 is larger than every vae latent"):
        check_crop(lat, 42, "bsds500-train", "vae", 8)
    # the task checks before it builds its crops
    task = DenoiserTask(DenoiserTaskConfig(crop=64))
    task._train, task._val, task.codec_scale = lat, [], 4
    with pytest.raises(ValueError, match=r"4x fewer than image pixels.*are --crop 16"):
        task.train_dataset()
    task.config.crop = 32
    with pytest.warns(UserWarning, match="padded"):
        assert task.train_dataset()[0].shape == (C, 32, 32)


def test_latents_smaller_than_the_crop_are_warned_of(latent_cache, tmp_path, capsys):
    """Latents narrower than ``--crop`` are padded to it, with a warning as ``train jscc``
    gives for small images (was silent); none when every latent holds the crop."""
    import warnings

    lat = [torch.randn(C, 41, 61), torch.randn(C, 61, 41), torch.randn(C, 8, 8)]
    with pytest.warns(UserWarning, match=r"1 of 3 vae latents of d are smaller than --crop 41 "
                      r"\(the smallest is 8x8\): they are padded"):  # fmt: skip
        check_crop(lat, 41, "d", "vae", 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_crop(lat, 8, "d", "vae", 8)
    # the command says so (the fake cached latents are 6..8 x 7..11)
    argv = ["train", "denoiser", "--codec", "vae", "--data", "bsds500-train", "--val-data",
            "none", "--crop", "7", "--width", "16", "--batch-size", "4", "--max-steps", "1",
            "--quiet", "--out", str(tmp_path / "r")]  # fmt: skip
    assert semcom_main(argv) == 0
    assert "2 of 6 vae latents of bsds500-train are smaller than --crop 7" in (
        capsys.readouterr().err
    )


def test_latent_crops_pad_small():
    # a little smaller than the crop: reflection padding, the latent itself sits top-left
    lat = torch.randn(C, 5, 6)
    ds = LatentCrops([lat], crop=8)
    unit = unit_power(lat.unsqueeze(0))[0]
    y = ds[0]
    assert y.shape == (C, 8, 8)
    assert torch.equal(y[:, :5, :6], unit)
    assert torch.equal(y[:, 5, :6], unit[:, 3])  # reflected row
    # much smaller than the crop (padding >= size, where reflection is impossible)
    ds = LatentCrops([torch.randn(C, 3, 5), torch.randn(C, 6, 2), torch.randn(C, 1, 1)], crop=6)
    for i in range(3):
        assert ds[i].shape == (C, 6, 6)
        assert torch.isfinite(ds[i]).all()


def test_latent_crops_are_each_latents_own_unit_power_values_in_its_dtype() -> None:
    """Every item is its own latent normalised (unit_power), bit for bit and in the latent's
    dtype, float64 too (not divided by another latent's RMS, nor by an RMS rounded to
    float32); the latents are kept, not copied."""
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        lat = [torch.randn(C, 5, 7, generator=g, dtype=dtype) * s for s in (3.0, 0.1, 1.7)]
        full = LatentCrops(lat, crop=None, repeats=2)
        assert all(a is b for a, b in zip(full.latents, lat, strict=True))
        for i in range(len(full)):
            want = unit_power(lat[i % 3].unsqueeze(0))[0]
            assert full[i].dtype == dtype and torch.equal(full[i], want)
        crops = LatentCrops(lat, crop=5, seed=1)
        assert crops.rms.dtype == torch.float64
        for i in range(3):
            unit = unit_power(lat[i].unsqueeze(0))[0]
            y = crops[i]
            assert any(torch.equal(y, unit[:, :, s : s + 5]) for s in range(3))


def test_item_rms_is_at_least_1e_6() -> None:
    """item_rms (unit_power's divisor) is each item's RMS, floored at 1e-6: a zero or tiny
    latent is not blown up to unit power."""
    from semcom.diffusion.latents import item_rms

    x = torch.stack([torch.full((2, 3), 2.0), torch.zeros(2, 3), torch.full((2, 3), 1e-8)])
    assert item_rms(x).shape == (3, 1, 1)
    assert item_rms(x).flatten().tolist() == pytest.approx([2.0, 1e-6, 1e-6], rel=1e-6)
    assert unit_power(x)[2].abs().max() == pytest.approx(1e-2, rel=1e-5)


def test_denoiser_validation_items_are_the_whole_latents_at_unit_power() -> None:
    """The validation set is each whole validation latent at unit power (not a crop of it,
    whatever the training ``crop``), in order."""
    task = DenoiserTask(DenoiserTaskConfig(crop=4))
    g = torch.Generator().manual_seed(1)
    task._train = [torch.randn(C, 8, 8, generator=g)]  # loaded: _load reads nothing
    task._val = [torch.randn(C, 6, 9, generator=g) * 3, torch.randn(C, 5, 5, generator=g)]
    ds = task.val_dataset()
    assert len(ds) == 2
    for i, lat in enumerate(task._val):
        assert torch.equal(ds[i], unit_power(lat.unsqueeze(0))[0])
    task._val = []  # --val-data none
    assert task.val_dataset() is None


# --------------------------------------------------------------------------------- task
def test_level_for_snr():
    v = level_for_snr(torch.tensor([0.0, 10.0, -10.0]), 1.0)
    torch.testing.assert_close(v, torch.tensor([0.5, 1 / 11, 10 / 11]))
    v2 = level_for_snr(torch.tensor([0.0]), 2.0)
    torch.testing.assert_close(v2, torch.tensor([2 / 3]))


def test_validation_gain_is_zero_for_the_lmmse_network() -> None:
    """Validation measures the gain over the LMMSE estimator for the task's P0: the untrained
    network (exactly that estimator) gains 0 dB at every SNR, also at P0 = 2.5."""
    task = DenoiserTask(DenoiserTaskConfig(codec="deepjscc", cbr="1/16"))
    g = torch.Generator().manual_seed(8)
    task._train = task._val = [torch.randn(4, 6, 6, generator=g) for _ in range(2)]
    task.p0 = 2.5
    net = LatentUNet(DenoiserConfig(channels=4, width=8, mults=(1, 2), blocks=1, p0=2.5))
    out = task.validate(net, None)  # type: ignore[arg-type]
    assert set(out) == {"gain_db@-10dB", "gain_db@0dB", "gain_db@10dB", "gain_db"}
    assert all(abs(gain) < 1e-4 for gain in out.values()), out


def _task() -> DenoiserTask:
    return DenoiserTask(
        DenoiserTaskConfig(codec="vae", crop=4, repeats=4, width=16, mults=(1, 2), seed=0,
                           snr_range=(-10.0, 20.0), val_snrs=[-10.0, 0.0, 10.0])
    )  # fmt: skip


def test_task_untrained_gain_zero(latent_cache):
    task = _task()
    model = task.build_model()
    assert isinstance(model, LatentUNet)
    assert model.config.channels == C and model.p0 == pytest.approx(1.0, abs=1e-5)
    m = task.validate(model, None)
    assert set(m) == {"gain_db@-10dB", "gain_db@0dB", "gain_db@10dB", "gain_db"}
    for k, g in m.items():
        assert abs(g) < 1e-6, (k, g)
    card = task.card()
    assert card["codec"]["name"] == "vae" and card["p0"] == task.p0
    assert card["codec"]["latent_shape_train"][0] == C
    items = task.train_dataset()
    assert len(items) == 6 * 4 and items[0].shape == (C, 4, 4)


def test_task_training_reduces_loss(latent_cache, tmp_path):
    task = _task()
    cfg = TrainConfig(out=str(tmp_path), epochs=2, batch_size=4, lr=3e-3, progress=False,
                      schedule="constant", seed=0)  # fmt: skip
    metrics = Trainer(task, cfg).fit()
    trained = load_denoiser(tmp_path, codec="vae", latent_channels=C)
    untrained = LatentUNet(trained.config)
    batch = torch.stack([task.train_dataset()[i] for i in range(8)])

    def fixed_loss(model):
        return float(task.loss(model, batch, torch.Generator().manual_seed(5))[0])

    with torch.no_grad():
        before, after = fixed_loss(untrained), fixed_loss(trained)
    assert after < 0.95 * before, (before, after)
    # validation: untrained = LMMSE = 0 dB exactly; learning the channel correlation helps
    assert metrics["gain_db"] > 0.3, metrics
    hist = json.loads((tmp_path / "card.json").read_text())["history"]
    assert len(hist) == 2 and hist[1]["metrics"]["gain_db"] > hist[0]["metrics"]["gain_db"] > 0


# ---------------------------------------------------------------------------------- CLI
def test_cli_train_writes_run(cli_run):
    for f in ("model.safetensors", "card.json", "state.pt"):
        assert (cli_run / f).is_file(), f
    card = json.loads((cli_run / "card.json").read_text())
    assert card["task"] == "denoiser" and card["step"] == 3
    assert card["codec"]["name"] == "vae"
    assert card["p0"] == pytest.approx(1.0, abs=1e-5)
    assert card["config"]["width"] == 16 and card["config"]["crop"] == 4
    assert card["config"]["snr_range"] == [-10.0, 20.0]
    assert "gain_db" in card["val_metrics"]
    _, meta = read_denoiser(cli_run)
    assert meta["task"] == "denoiser" and meta["codec"] == "vae" and meta["cbr"] == "None"
    assert json.loads(meta["denoiser_config"])["width"] == 16


def test_cli_resume_alone(cli_run, tmp_path):
    """`semcom train denoiser --resume RUN --epochs 2 --max-steps N` continues the run with its own
    options (tuples such as the SNR range and defaults resolved at the start, such as the
    encode SNRs, compare equal to the card's lists and values)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    argv = ["train", "denoiser", "--resume", str(run), "--epochs", "2", "--max-steps", "5"]
    assert semcom_main(argv) == 0
    card = json.loads((run / "card.json").read_text())
    assert card["step"] == 5 and card["config"]["width"] == 16
    assert card["resumed_with"] == ["semcom " + shlex.join(argv)]


def test_a_run_trained_from_python_resumes_from_the_command_line(latent_cache, tmp_path, capsys):
    """A run started from Python (the card's command is "") resumes with ``--resume`` alone:
    the options come from the card's configs; one trained with a setting that no option of
    the command has (here the U-Net's ``mults``) is refused in one line saying how to resume
    it (was: "options differ" naming CLI defaults nobody gave)."""
    base = dict(codec="vae", data="bsds500-train", val_data="none", crop=4, width=16,
                snr_range=(-10.0, 20.0), repeats=1)  # fmt: skip
    for name, extra in (("plain", {}), ("mults", {"mults": (1, 2)})):
        run = tmp_path / name
        task = DenoiserTask(DenoiserTaskConfig(**base, **extra))
        Trainer(task, TrainConfig(out=str(run), epochs=1, batch_size=4, progress=False)).fit()
        assert json.loads((run / "card.json").read_text())["command"] == ""
        rc = semcom_main(["train", "denoiser", "--resume", str(run), "--epochs", "2", "--quiet"])
        err = capsys.readouterr().err
        if not extra:
            assert rc == 0, err
            card = json.loads((run / "card.json").read_text())
            assert card["epoch"] == 2 and card["config"]["width"] == 16
        else:
            assert rc == 2 and "options differ" not in err
            assert "it was trained from Python with config mults=[1, 2]" in err
            assert f"fit(resume={str(run)!r})" in err


def test_resume_metadata_tolerates_rounding():
    """A checkpoint's P0 measured with another summation order (thread count) still resumes;
    a real change of the model's configuration does not."""
    from semcom.train.engine import _same_metadata

    a = json.dumps({"channels": 6, "mults": [1, 2, 2], "p0": 1.0000000051781535})
    assert _same_metadata(a, a.replace("1.0000000051781535", "1.00000000923872"))
    assert not _same_metadata(a, a.replace("1.0000000051781535", "1.01"))
    assert not _same_metadata(a, a.replace('"channels": 6', '"channels": 7'))
    assert not _same_metadata(a, a.replace("[1, 2, 2]", "[1, 2]"))
    assert not _same_metadata('{"flag": true}', '{"flag": 1}')
    assert _same_metadata("vae", "vae") and not _same_metadata("vae", "adjscc")


def test_cli_bad_snr_range(latent_cache, tmp_path, capsys):
    rc = semcom_main(["train", "denoiser", "--snr-range", "20:-5", "--out", str(tmp_path)])
    assert rc == 2
    assert "SNR" in capsys.readouterr().err


# --------------------------------------------------------------------------- checkpoint
def test_load_denoiser_checks(cli_run, tmp_path):
    m = load_denoiser(cli_run, codec="vae", latent_channels=C)
    assert isinstance(m, LatentUNet) and not m.training
    assert not any(p.requires_grad for p in m.parameters())
    sd = load_file(str(cli_run / "model.safetensors"))
    assert all(torch.equal(sd[k], v) for k, v in m.state_dict().items())
    with pytest.raises(ValueError, match="vae") as e:
        load_denoiser(cli_run, codec="deepjscc")
    assert "deepjscc" in str(e.value)
    with pytest.raises(ValueError, match="32-channel latents, the codec has 16"):
        load_denoiser(cli_run / "model.safetensors", codec="vae", latent_channels=16)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
                    .to(torch.uint8).numpy().tobytes())  # fmt: skip
    with pytest.raises(ValueError, match="corrupt"):
        load_denoiser(bad)
    jscc = tmp_path / "jscc.safetensors"
    save_file({"w": torch.zeros(2)}, str(jscc), {"model": "deepjscc", "c": "8", "width": "16"})
    with pytest.raises(ValueError, match="not a denoiser"):
        load_denoiser(jscc)
    with pytest.raises(ValueError, match="not found"):
        load_denoiser(tmp_path / "missing.safetensors")
    from semcom.diffusion.registry import build_dm_link

    with pytest.raises(ValueError, match=r"denoiser checkpoint .*missing.* not found"):
        build_dm_link(
            "deepjscc", 1 / 16, torch.device("cpu"), denoiser_path=str(tmp_path / "missing")
        )
    # weights that do not match the stored config
    sd.pop("out.bias")
    meta = read_denoiser(cli_run)[1]
    save_file(sd, str(tmp_path / "short.safetensors"), meta)
    with pytest.raises(ValueError, match="does not match"):
        load_denoiser(tmp_path / "short.safetensors")


def test_cbr_check(untrained_ckpt, tmp_path):
    model = LatentUNet(SMALL)
    meta = DenoiserTask(DenoiserTaskConfig(codec="deepjscc", cbr="1/16")).model_metadata(model)
    p = tmp_path / "d.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(p), meta)
    load_denoiser(p, codec="deepjscc", cbr="1/16")
    with pytest.raises(ValueError, match="1/16"):
        load_denoiser(p, codec="deepjscc", cbr="1/6")
    load_denoiser(untrained_ckpt, codec="vae", cbr="1/6")  # CBR-agnostic (None) is accepted


def test_export_and_find(cli_run, tmp_path):
    from semcom.zoo import list_checkpoints

    zoo = tmp_path / "zoo"
    card_path = export_denoiser(cli_run, "dm-vae-test", test={"note": "t"}, zoo_dir=zoo)
    assert card_path == zoo / "dm-vae-test.json"
    card = json.loads(card_path.read_text())
    # shipped in float16: the same weights to half precision, checksum of the shipped file
    shipped = (zoo / "dm-vae-test.safetensors").read_bytes()
    assert card["dtype"] == "float16"
    assert card["sha256"] == hashlib.sha256(shipped).hexdigest()
    w_run, _ = read_denoiser(cli_run)
    w_zoo, meta = read_denoiser(zoo / "dm-vae-test.safetensors")
    assert meta["codec"] == "vae" and set(w_run) == set(w_zoo)
    for k, v in w_run.items():
        assert w_zoo[k].dtype == torch.float16
        torch.testing.assert_close(w_zoo[k].float(), v.half().float())
    assert card["model"] == "denoiser" and card["codec"]["name"] == "vae"
    assert card["snr_train"] == "-10:20" and card["steps"] == 3
    entries = list_checkpoints(zoo)
    assert [e.name for e in entries] == ["dm-vae-test"]
    assert entries[0].cbr == pytest.approx(1 / 12) and entries[0].data == "bsds500-train"
    e = find_denoiser("vae", zoo_dir=zoo)
    assert e.name == "dm-vae-test"
    load_denoiser(e.weights, codec="vae", latent_channels=C)
    with pytest.raises(ValueError, match="no denoiser"):
        find_denoiser("deepjscc", "1/16", zoo_dir=zoo)
    with pytest.raises(ValueError, match="no denoiser"):
        find_denoiser("vae", zoo_dir=tmp_path / "empty")


# ----------------------------------------------------------------------- vae+dm scheme
@pytest.fixture(scope="module")
def vae_pair(weights_root, untrained_ckpt):
    from semcom.diffusion.registry import build_dm_link
    from semcom.schemes import get_scheme

    dm = build_dm_link("vae", None, torch.device("cpu"), denoiser_path=str(untrained_ckpt))
    return dm, get_scheme("vae")


def _image() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 48), indexing="ij")
    base = torch.stack([xx, yy, 0.5 * (xx + yy)])
    return (0.8 * base + 0.2 * torch.rand(3, 32, 48, generator=g)).clamp(0, 1).unsqueeze(0)


def test_vae_dm_untrained_equals_lmmse(vae_pair):
    from semcom.channels import Channel

    dm, plain = vae_pair
    assert dm.name == "vae+dm"
    img = _image()
    for snr in (0.0, 10.0):
        a = dm.transmit(img, Channel("awgn"), snr, torch.Generator().manual_seed(7))
        b = plain.transmit(img, Channel("awgn"), snr, torch.Generator().manual_seed(7))
        assert a.images.shape == img.shape
        torch.testing.assert_close(a.images, b.images, atol=1e-5, rtol=0)
        assert a.info["n_skip"] == 0 and a.info["network_calls"] == 1
        assert {"n_start_from_noise", "n_clamped", "deep_fades"} <= set(a.info)
        assert a.cbr == b.cbr
    # a different noise draw changes the output (the comparison above is not vacuous)
    c = dm.transmit(img, Channel("awgn"), 0.0, torch.Generator().manual_seed(8))
    assert (c.images - a.images).abs().max() > 1e-3


def test_transmission_counts_what_the_receiver_clamped(vae_pair):
    """Per image (here one image at three SNRs), what the diffusion receiver clamped: an SNR
    below the schedule starts from noise, one above it skips the denoiser, and the tuned
    ADJSCC receiver's own skip from 10 dB up is no clamp."""
    from semcom.channels import Channel
    from semcom.link import describe_counts
    from semcom.schemes import get_scheme

    dm, _ = vae_pair
    img = _image().expand(3, -1, -1, -1)
    snr = torch.tensor([-60.0, 0.0, 60.0], dtype=torch.float64)
    tx = dm.transmit(img, Channel("awgn"), snr, torch.Generator().manual_seed(7))
    assert {k: v.tolist() for k, v in tx.counts.items()} == {
        "deep_fades": [0, 0, 0],
        "step_clamped_high": [0, 0, 1],
        "step_clamped_low": [1, 0, 0],
    }
    assert describe_counts({"step_clamped_low": 1}) == (
        "SNR below the diffusion schedule: t* = T, started from noise"
    )
    total = {k: int(v.sum()) for k, v in tx.counts.items()}
    assert describe_counts(total, of=3) == (
        "SNR above the diffusion schedule: t* = 0, denoiser skipped (1 of 3); "
        "SNR below the diffusion schedule: t* = T, started from noise (1 of 3)"
    )
    tuned = get_scheme("adjscc+dm", 1 / 16)  # skips the network from 10 dB up, by design
    tx = tuned.transmit(img, Channel("awgn"), snr, torch.Generator().manual_seed(7))
    assert tx.counts["step_clamped_low"].tolist() == [1, 0, 0]
    assert tx.counts["step_clamped_high"].tolist() == [0, 0, 0]


@pytest.mark.parametrize("p0", [0.5, 1.7])
def test_vae_dm_units_with_p0(vae_pair, p0):
    """Untrained denoiser with P0 != 1 (receiver told the same P0): the alpha / 1/sqrt(P0)
    mapping must still give the LMMSE receiver exactly for the exact-level rules (K = 1)."""
    import dataclasses

    from semcom.channels import Channel
    from semcom.diffusion.receiver import DiffusionReceiver
    from semcom.link import AnalogLink

    _, plain = vae_pair
    den = LatentUNet(dataclasses.replace(SMALL, p0=p0)).eval()
    img = _image()
    for rule, tol in (("continuous", 1e-5), ("ddm", 1e-5), ("vp", 2e-3)):  # vp: table steps
        link = AnalogLink(plain.codec, DiffusionReceiver(den, p0=p0, rule=rule, steps=1))
        for snr in (0.0, 10.0):
            a = link.transmit(img, Channel("awgn"), snr, torch.Generator().manual_seed(3))
            b = plain.transmit(img, Channel("awgn"), snr, torch.Generator().manual_seed(3))
            torch.testing.assert_close(a.images, b.images, atol=tol, rtol=0)
    # a receiver told the wrong P0 is visibly off (the check above has teeth)
    link = AnalogLink(plain.codec, DiffusionReceiver(den, p0=1.2 * p0, steps=1))
    a = link.transmit(img, Channel("awgn"), 0.0, torch.Generator().manual_seed(3))
    b = plain.transmit(img, Channel("awgn"), 0.0, torch.Generator().manual_seed(3))
    assert (a.images - b.images).abs().max() > 5e-3


def test_vae_dm_rules_and_errors(weights_root, untrained_ckpt):
    from semcom.channels import Channel
    from semcom.schemes import get_scheme

    img = _image()
    for rule in ("vp", "ddm"):
        s = get_scheme("vae+dm", matching=rule, steps=2, denoiser_path=str(untrained_ckpt))
        t = s.transmit(img, Channel("awgn"), 5.0, torch.Generator().manual_seed(1))
        assert torch.isfinite(t.images).all() and t.images.shape == img.shape
        assert 1 <= t.info["network_calls"] <= 2
    with pytest.raises(ValueError, match="matching"):
        get_scheme("vae+dm", matching="bogus", denoiser_path=str(untrained_ckpt))
    with pytest.raises(ValueError, match="steps"):
        get_scheme("vae+dm", steps=0, denoiser_path=str(untrained_ckpt))
    with pytest.raises(ValueError, match="fading"):
        get_scheme("vae+dm", fading="nope", denoiser_path=str(untrained_ckpt))
    with pytest.raises(ValueError, match="CBR"):
        get_scheme("vae+dm", cbr=1 / 6, denoiser_path=str(untrained_ckpt))


def test_deepjscc_dm_stops_at_the_decoder_training_snr():
    """The shipped DeepJSCC (trained at 10 dB) gets latents at 10 dB from its receiver: the
    reverse process stops there (``dm_stop=auto``), above 10 dB the denoiser is not called;
    ``dm_stop=clean`` denoises to the clean latent; vae+dm always does."""
    from semcom.channels import Channel
    from semcom.schemes import get_scheme

    auto = get_scheme("deepjscc+dm", 1 / 16)
    assert auto.receiver.stop_snr_db == auto.receiver.skip_snr_db == 10.0
    assert get_scheme("deepjscc+dm", 1 / 16, dm_stop="clean").receiver.stop_snr_db is None
    plain = get_scheme("deepjscc", 1 / 16)
    img = _image()
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    for snr, called in ((15.0, False), (0.0, True)):
        a = auto.transmit(img, Channel("awgn"), snr, g())
        b = plain.transmit(img, Channel("awgn"), snr, g())
        assert (a.info["network_calls"] > 0) == called
        assert a.info.get("n_skip_snr", 0) == (not called)  # skipped, not matched
        assert torch.equal(a.images, b.images) != called  # same noise: identical when skipped
    with pytest.raises(ValueError, match="dm-stop"):
        get_scheme("deepjscc+dm", 1 / 16, dm_stop="half")
    # ADJSCC, trained over -5...20 dB, adapts: denoised fully
    assert get_scheme("adjscc+dm", 1 / 16, dm_decoder="base").receiver.stop_snr_db is None


def test_deepjscc_dm_without_a_codec_card_is_refused_not_denoised_fully(tmp_path):
    """A bare copy of the shipped DeepJSCC weights (no card: no training SNR) lost the stop at
    10 dB silently and gave the same weights another result; now refused, unless told."""
    import shutil

    from semcom.schemes import get_scheme
    from semcom.zoo import ZOO_DIR

    bare = tmp_path / "dj.safetensors"
    shutil.copy(Path(ZOO_DIR) / "deepjscc-c6-bsds-awgn10.safetensors", bare)
    with pytest.raises(ValueError, match=r"card.*deepjscc\+dm stops denoising.*--dm-stop clean"):
        get_scheme("deepjscc+dm", 1 / 16, codec_path=str(bare))
    told = get_scheme("deepjscc+dm", codec_path=str(bare), dm_stop="clean")
    assert told.receiver.stop_snr_db is None


def test_denoiser_of_other_codec_weights_refused(tmp_path):
    """A denoiser trained on the latents of other DeepJSCC weights (same name and CBR) is
    refused by the receiver; the shipped one records the shipped codec's fingerprint."""
    from semcom.fingerprint import codec_fingerprint
    from semcom.schemes import get_scheme
    from semcom.zoo import find_checkpoint, list_checkpoints, load_codec

    model = LatentUNet(DenoiserConfig(channels=6, width=16, mults=(1, 2), blocks=1, emb_dim=32))
    meta = DenoiserTask(DenoiserTaskConfig(codec="deepjscc", cbr="1/16")).model_metadata(model)
    p = tmp_path / "d.safetensors"
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(p), {**meta, "codec_fingerprint": "0" * 12})
    with pytest.raises(ValueError, match="codec weights 000000000000"):
        get_scheme("deepjscc+dm", 1 / 16, denoiser_path=str(p))
    save_file(tensors, str(p), meta)  # no fingerprint recorded (older runs): accepted
    get_scheme("deepjscc+dm", 1 / 16, denoiser_path=str(p))
    (den,) = [e for e in list_checkpoints() if e.name == "denoiser-deepjscc-c6-bsds"]
    fp = codec_fingerprint(load_codec("deepjscc", find_checkpoint("deepjscc", 1 / 16).cbr))
    assert den.card["codec"]["fingerprint"] == fp


def test_vae_dm_refuses_other_codec(weights_root, tmp_path):
    from semcom.schemes import get_scheme

    model = LatentUNet(SMALL)
    meta = DenoiserTask(DenoiserTaskConfig(codec="deepjscc", cbr="1/16")).model_metadata(model)
    p = tmp_path / "d.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(p), meta)
    with pytest.raises(ValueError, match="deepjscc"):
        get_scheme("vae+dm", denoiser_path=str(p))


# ---------------------------------------------------------------------------------- plot
def test_cli_plot(tmp_path, capsys):
    doc = {
        "semcom_version": "0.1.0",
        "dataset": {"name": "kodak", "n_images": 2},
        "channel": {"name": "awgn", "csi": "perfect"},
        "runs": [
            {"scheme": "vae", "cbr": None, "snr_db": [0, 10], "psnr": [20.0, 25.0]},
            {"scheme": "vae+dm", "cbr": 1 / 12, "snr_db": [0, 10], "psnr": [21.0, None]},
        ],
    }
    res = tmp_path / "r.json"
    res.write_text(json.dumps(doc))
    png = tmp_path / "fig" / "f.png"
    assert semcom_main(["plot", str(res), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png2 = tmp_path / "g.png"
    anchors = REPO / "results" / "anchors" / "kodak-awgn.json"
    rc = semcom_main(["plot", str(res), "--anchors", str(anchors), "--out", str(png2)])
    assert rc == 0 and png2.stat().st_size > 1000
    assert "warning" not in capsys.readouterr().err  # anchors carry the papers' own data
    # files evaluated on other images (here other crops) are drawn, with a warning
    cropped = tmp_path / "c.json"
    cropped.write_text(json.dumps({**doc, "dataset": {"name": "kodak", "n_images": 2, "crop": 64}}))
    assert semcom_main(["plot", str(res), str(cropped), "--out", str(png2)]) == 0
    err = capsys.readouterr().err
    assert "semcom: warning: the files were evaluated on different images" in err
    assert "64x64 crops" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    capsys.readouterr()
    assert semcom_main(["plot", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a semcom results file" in capsys.readouterr().err
    # an experiment's file is named as one, with its figure; a PNG given as input is named
    exp = tmp_path / "p.json"
    exp.write_text(json.dumps({"experiment": "perturb", "t": {}}))
    assert semcom_main(["table", str(exp)]) == 2
    err = capsys.readouterr().err
    assert "a 'semcom experiment perturb' file, not an eval sweep: its figure is" in err
    assert str(tmp_path / "p.png") in err
    assert semcom_main(["plot", str(png), "--out", str(tmp_path / "x.png")]) == 2
    assert f"{png}: not a results JSON file" in capsys.readouterr().err
    bad.write_text(json.dumps({"runs": [{"psnr": [20.0]}]}))  # a run without scheme / SNRs
    for cmd in (["plot", str(bad), "--out", str(tmp_path / "x.png")], ["table", str(bad)],
                ["merge", str(bad), str(res), "--out", str(tmp_path / "m.json")]):  # fmt: skip
        assert semcom_main(cmd) == 2
        assert "run 0 has no 'scheme' and 'snr_db'" in capsys.readouterr().err
    # no run has the metric
    rc = semcom_main(["plot", str(res), "--metric", "lpips", "--out", str(tmp_path / "y.png")])
    assert rc == 2
    assert not (tmp_path / "x.png").exists()


def test_latent_task_cbr_has_one_spelling():
    """--cbr 0.0625 or 2/32 is 1/16 in the card and metadata, where the receivers look it up."""
    from semcom.train.denoiser import DenoiserTaskConfig
    from semcom.train.snr_estimator import SNREstimatorTaskConfig

    for cbr in ("0.0625", "2/32", "1/16"):
        assert DenoiserTaskConfig(codec="deepjscc", cbr=cbr).cbr == "1/16"
        assert SNREstimatorTaskConfig(codec="adjscc", cbr=cbr).cbr == "1/16"
    assert DenoiserTaskConfig(codec="deepjscc").cbr is None  # filled from the codec on load
    with pytest.raises(ValueError):
        DenoiserTaskConfig(codec="deepjscc", cbr="fast")


def test_latent_cache_is_keyed_by_codec_weights():
    """A retrained codec (same name and CBR, new weights) never gets the old latents."""
    from semcom.fingerprint import codec_fingerprint

    a, b = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        b.load_state_dict(a.state_dict())
        assert codec_fingerprint(a) == codec_fingerprint(b)
        b.weight[0, 0, 0, 0] += 1e-6
    assert codec_fingerprint(a) != codec_fingerprint(b)
    assert codec_fingerprint(a) == codec_fingerprint(a.to(memory_format=torch.channels_last))
    pa = latent_cache_path("deepjscc", "1/16", "kodak", codec_fingerprint(a))
    assert pa != latent_cache_path("deepjscc", "1/16", "kodak", codec_fingerprint(b))
    assert "1_16" in pa.name and codec_fingerprint(a) in pa.name


def test_adaptive_codec_latents_mix_encoder_snrs(tmp_path, monkeypatch):
    """ADJSCC latents depend on the encoder SNR: each image is encoded at every listed SNR,
    image-major, cached under a name carrying the SNRs; a codec that ignores the SNR (or an
    adaptive one without SNRs) is refused."""
    from semcom.codecs.jscc import ADJSCC, DeepJSCC
    from semcom.data import dataset_signature
    from semcom.train.denoiser import default_encode_snrs, get_latents

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 16, 24, generator=g) for _ in range(3)]
    monkeypatch.setattr("semcom.data.get_dataset", lambda name: images)
    torch.manual_seed(0)
    adj, dj = ADJSCC(c=4, width=8).eval(), DeepJSCC(c=4, width=8).eval()
    lat, fp = get_latents("adjscc", "1/24", "toy", False, adj, [-5.0, 20.0])
    assert len(lat) == 6
    with torch.inference_mode():
        for i, x in enumerate(images):
            for j, snr in enumerate((-5.0, 20.0)):
                want = adj.encode(x[None], torch.tensor([snr]))[0]
                torch.testing.assert_close(lat[2 * i + j], want)
    assert not torch.allclose(lat[0], lat[1])  # the SNR changes the latent
    path = latent_cache_path("adjscc", "1/24", "toy", fp, [-5.0, 20.0], flips=False)
    assert path.is_file() and "snr-5_20" in path.name
    assert path.stem.endswith(dataset_signature(images))  # a plain list: its length
    # a training set (with mirrored copies) and a validation set (without) never share a cache
    assert not latent_cache_path("adjscc", "1/24", "toy", fp, [-5.0, 20.0]).exists()
    flipped, _ = get_latents("adjscc", "1/24", "toy", True, adj, [-5.0, 20.0])
    assert (
        len(flipped) == 12
        and len(get_latents("adjscc", "1/24", "toy", False, adj, [-5.0, 20.0])[0]) == 6
    )
    assert path != latent_cache_path("adjscc", "1/24", "toy", fp, flips=False)
    again, _ = get_latents("adjscc", "1/24", "toy", False, adj, [-5.0, 20.0])  # from the cache
    torch.testing.assert_close(
        torch.cat([t.flatten() for t in again]), torch.cat([t.flatten() for t in lat])
    )
    with pytest.raises(ValueError, match="SNR-adaptive"):
        get_latents("adjscc", "1/24", "toy", False, adj)
    with pytest.raises(ValueError, match="ignores the SNR"):
        get_latents("deepjscc", "1/24", "toy", False, dj, [0.0])
    assert default_encode_snrs("deepjscc", dj) is None


def test_latent_cache_follows_the_data_sets_files(tmp_path, monkeypatch):
    """The cache was keyed by the data set's name only: a copy with an image added (an
    incomplete download completed, another SEMCOM_DATA) was served the old latents."""
    from PIL import Image

    from semcom.codecs.jscc import DeepJSCC
    from semcom.train.denoiser import get_latents

    folder = tmp_path / "data" / "kodak"
    folder.mkdir(parents=True)
    monkeypatch.setenv("SEMCOM_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)

    def add(name: str, size: int = 16) -> None:
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)

    add("a.png")
    add("b.png")
    torch.manual_seed(0)
    dj = DeepJSCC(c=4, width=8).eval()
    assert len(get_latents("deepjscc", "1/24", "kodak", False, dj)[0]) == 2
    add("c.png")
    assert len(get_latents("deepjscc", "1/24", "kodak", False, dj)[0]) == 3
    first = get_latents("deepjscc", "1/24", "kodak", False, dj)[0][0]
    add("a.png", 32)  # replaced by another image (of another size)
    assert get_latents("deepjscc", "1/24", "kodak", False, dj)[0][0].shape != first.shape
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 3  # one per version


def test_default_encode_snrs_from_the_zoo_range():
    """The shipped ADJSCC (trained on -5:20 dB) is encoded at -5, 0, ..., 20 dB."""
    from semcom.train.denoiser import codec_for, default_encode_snrs

    assert default_encode_snrs("adjscc", codec_for("adjscc", "1/16")) == [
        -5.0, 0.0, 5.0, 10.0, 15.0, 20.0
    ]  # fmt: skip


def test_quiet_hides_the_latent_encoding_bar(tmp_path, monkeypatch):
    """--quiet also silences the progress bar of encoding the training latents."""
    import semcom.train.denoiser as den

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # encode, not read a cache
    seen = []
    real = den.encode_images

    def spy(*a, **k):
        seen.append(k.get("progress", True))
        return real(*a, **k)

    monkeypatch.setattr(den, "encode_images", spy)
    base = ["train", "denoiser", "--codec", "deepjscc", "--cbr", "1/16", "--data", "samples",
            "--val-data", "samples", "--crop", "4", "--width", "16", "--batch-size", "4",
            "--max-steps", "1", "--epochs", "1"]  # fmt: skip
    assert semcom_main([*base, "--quiet", "--out", str(tmp_path / "q")]) == 0
    assert seen == [False, False]  # training and validation latents
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    assert semcom_main([*base, "--out", str(tmp_path / "v")]) == 0
    assert seen[2:] == [True, True]


def test_a_codec_variant_finds_its_own_shipped_denoiser():
    """Two shipped denoisers for DeepJSCC 1/16: each codec's weights pick the one trained on
    them (by fingerprint); without a fingerprint, or for unknown weights, the first one."""
    from semcom.codecs.jscc import load_jscc
    from semcom.diffusion.checkpoint import find_denoiser
    from semcom.diffusion.registry import denoiser_file
    from semcom.zoo import resolve_weights

    default = load_jscc(resolve_weights("deepjscc-c6-bsds-awgn10"))
    variant = load_jscc(resolve_weights("deepjscc-c6-bsds-awgn10-long"))
    assert Path(denoiser_file(default, "deepjscc", None)).stem == "denoiser-deepjscc-c6-bsds"
    assert Path(denoiser_file(variant, "deepjscc", None)).stem == "denoiser-deepjscc-c6-bsds-long"
    assert find_denoiser("deepjscc", "1/16").name == "denoiser-deepjscc-c6-bsds"
    other = find_denoiser("deepjscc", "1/16", fingerprint="000000000000")
    assert other.name == "denoiser-deepjscc-c6-bsds"


def test_denoiser_and_estimator_options_take_zoo_names():
    """``--denoiser`` / ``--snr-estimator`` take a zoo name as ``--codec`` does (they took only
    paths: a name was 'not found'), a path as before."""
    from semcom.diffusion.registry import build_dm_link
    from semcom.zoo import find_checkpoint

    cpu = torch.device("cpu")
    named = build_dm_link(
        "deepjscc",
        1 / 16,
        cpu,
        denoiser_path="denoiser-deepjscc-c6-bsds",
        snr_source="learned",
        estimator_path="snr-estimator-deepjscc-c6-bsds",
    )
    default = build_dm_link("deepjscc", 1 / 16, cpu, snr_source="learned")
    assert named.weights() == default.weights()  # the same checkpoints, by fingerprint
    path = str(find_checkpoint("deepjscc", 1 / 16).weights).replace(
        "deepjscc-c6-bsds-awgn10", "denoiser-deepjscc-c6-bsds"
    )
    by_path = build_dm_link("deepjscc", 1 / 16, cpu, denoiser_path=path)
    assert by_path.weights()["denoiser"] == default.weights()["denoiser"]
    with pytest.raises(ValueError, match="SNR estimator checkpoint 'no-such' not found"):
        build_dm_link("deepjscc", 1 / 16, cpu, snr_source="learned", estimator_path="no-such")


def test_shipped_adjscc_dm_keeps_its_decoder_beside_the_long_variant():
    """Two zoo decoders trained behind the shipped ADJSCC denoiser: ``auto`` keeps the one the
    results files were made with, the ``-long`` variant is taken by name only."""
    from semcom.codecs.jscc import load_jscc
    from semcom.diffusion.registry import build_dm_link
    from semcom.fingerprint import codec_fingerprint
    from semcom.zoo import resolve_weights

    cpu = torch.device("cpu")

    def fp(ref):
        return codec_fingerprint(load_jscc(resolve_weights(ref)))

    auto = build_dm_link("adjscc", 1 / 16, cpu).codec
    assert codec_fingerprint(auto) == fp("adjscc-c6-bsds-awgn-5-20-dmdec")
    name = "adjscc-c6-bsds-awgn-5-20-dmdec-long"
    long = build_dm_link("adjscc", 1 / 16, cpu, dm_decoder=name).codec
    assert codec_fingerprint(long) == fp(name) != codec_fingerprint(auto)


def test_train_denoiser_refuses_a_cbr_for_the_vae(tmp_path, capsys):
    """It was recorded in the card (and made a second latent cache) though TAEF2 has one CBR."""
    from semcom.cli import main as semcom_main

    out = tmp_path / "d"
    argv = ["train", "denoiser", "--codec", "vae", "--cbr", "1/16", "--data", "samples"]
    assert semcom_main([*argv, "--out", str(out)]) == 2
    assert "vae is the pretrained TAEF2 (one CBR, 1/12): leave --cbr out" in capsys.readouterr().err
    assert not out.exists()


def _spied(scheme):
    """``scheme`` with its denoiser wrapped: every call's noise levels are recorded."""
    net, levels = scheme.receiver.denoise, []

    def spy(x, level):
        levels.append(torch.as_tensor(level).detach().flatten().double().clone())
        return net(x, level)

    scheme.receiver.denoise = spy
    return scheme, levels


def test_receiver_options_reach_the_sampler():
    """--matching, --fading-grid and --fading-samples change what the sampler does (the
    oracle tests are exact on any grid, so they cannot tell the options apart): the rule is
    the one asked, quantile and time grids hand the network other levels, and N samples of
    water-filling call the network N times as often."""
    from semcom.channels import Channel
    from semcom.schemes import get_scheme

    img = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))

    def send(channel, snr, **options):
        s, levels = _spied(get_scheme("adjscc+dm", 1 / 16, dm_stop="clean", **options))
        t = s.transmit(img, Channel(channel), snr, torch.Generator().manual_seed(4))
        return s, t, levels

    outs = {}
    for rule in ("continuous", "vp", "ddm"):
        s, t, levels = send("awgn", 0.0, matching=rule, steps=2)
        assert s.receiver.rule == rule and s.receiver.last.info["rule"] == rule
        assert t.info["network_calls"] == len(levels) >= 1
        outs[rule] = t.images
    assert not torch.allclose(outs["vp"], outs["continuous"])
    assert not torch.allclose(outs["ddm"], outs["continuous"])
    seen = {}
    for grid in ("time", "quantile"):
        s, t, levels = send("rayleigh-fast", 0.0, fading="waterfill", fading_grid=grid, steps=4)
        assert s.receiver.fading_grid == grid
        seen[grid] = torch.cat(levels)
    assert seen["time"].shape != seen["quantile"].shape or not torch.allclose(
        seen["time"], seen["quantile"]
    )
    calls = {}
    for n in (1, 3):
        s, t, levels = send("rayleigh-fast", 0.0, fading="waterfill", fading_samples=n, steps=4)
        calls[n] = t.info["network_calls"]
        assert calls[n] == len(levels)
    assert calls[3] == 3 * calls[1] > 0


def test_snr_estimator_of_other_codec_weights_refused(tmp_path):
    """An SNR estimator trained on the latents of other DeepJSCC weights is refused by the
    receiver (as a denoiser is); the shipped one, with the shipped codec's fingerprint, is not."""
    from safetensors import safe_open

    from semcom.schemes import get_scheme
    from semcom.zoo import resolve_weights

    shipped = resolve_weights("snr-estimator-deepjscc-c6-bsds")
    with safe_open(str(shipped), framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    p = tmp_path / "est.safetensors"
    save_file(tensors, str(p), {**meta, "codec_fingerprint": "0" * 12})
    with pytest.raises(ValueError, match=r"SNR estimator .* codec weights 000000000000"):
        get_scheme("deepjscc+dm", 1 / 16, snr_source="learned", estimator_path=str(p))
    get_scheme("deepjscc+dm", 1 / 16, snr_source="learned", estimator_path=str(shipped))


def test_denoiser_training_noises_the_latent_at_the_matched_level():
    """The training forward process: SNR uniform over snr_range, v = P0 / (P0 + 10^(snr/10)),
    x_t = sqrt(1 - v) x0 + sqrt(v) n, the network asked for x0 (checked at P0 = 2.5, where a
    dropped sqrt or P0 shows)."""
    task = DenoiserTask(DenoiserTaskConfig(codec="deepjscc", cbr="1/16", snr_range=(-5.0, 15.0)))
    task.p0 = 2.5
    seen = {}

    class Spy(torch.nn.Module):
        def forward(self, x, v):
            seen["x"], seen["v"] = x, v
            return torch.zeros_like(x)

    x0 = torch.randn(4, 6, 8, 8, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(6)
    loss, _ = task.loss(Spy(), x0, g)
    g = torch.Generator().manual_seed(6)  # the same draws, in the same order
    snr = -5.0 + 20.0 * torch.rand(4, generator=g)
    n = torch.randn(x0.shape, generator=g)
    v = 2.5 / (2.5 + 10 ** (snr / 10))
    torch.testing.assert_close(seen["v"], v.float(), rtol=1e-6, atol=1e-7)
    vv = v.view(4, 1, 1, 1)
    torch.testing.assert_close(seen["x"], (1 - vv).sqrt() * x0 + vv.sqrt() * n)
    torch.testing.assert_close(loss, x0.pow(2).mean())


def test_a_denoiser_network_of_your_own_trains_and_its_checkpoint_says_so(tmp_path) -> None:
    """A :class:`DenoiserTask` subclass building another network than the LatentUNet (a
    researcher's own) gets checkpoint metadata naming its class (it was an AssertionError
    at the first checkpoint, after the epoch's training), and the denoiser loader refuses the
    file naming it, instead of calling it no denoiser checkpoint."""

    class TwoConv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(C, C, 3, padding=1)

        def forward(self, x_t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return self.conv(x_t)

    net = TwoConv()
    meta = DenoiserTask(DenoiserTaskConfig(codec="vae")).model_metadata(net)
    assert meta["network"] == f"{__name__}.{TwoConv.__qualname__}"  # where to find it
    assert "denoiser_config" not in meta
    assert meta["task"] == "denoiser" and meta["codec"] == "vae"
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), meta)
    with pytest.raises(ValueError, match=r"a denoiser network of your own \(.*TwoConv\)"):
        load_denoiser(path)
    from semcom.estimation.learned import load_snr_estimator

    with pytest.raises(ValueError, match=r"not a snr-estimator checkpoint \(task 'denoiser'\)"):
        load_snr_estimator(path)  # another task's network of one's own: not "your own"


def test_trainer_asks_the_task_for_the_model_metadata_before_training(tmp_path) -> None:
    """A model its task cannot describe fails before any data is prepared or step taken, not
    when the first checkpoint is written after an epoch."""

    class Refusing(DenoiserTask):
        def build_model(self) -> torch.nn.Module:
            return torch.nn.Linear(1, 1)

        def model_metadata(self, model: torch.nn.Module) -> dict[str, str]:
            raise ValueError("cannot describe it")

        def train_dataset(self):
            raise AssertionError("data prepared before the model was checked")

    cfg = TrainConfig(out=str(tmp_path / "run"), progress=False)
    with pytest.raises(ValueError, match="cannot describe it"):
        Trainer(Refusing(DenoiserTaskConfig(codec="vae")), cfg).fit()
