"""The library on a GPU: every part agrees with the CPU (marker ``cuda``).

Skipped where torch sees no CUDA device (CI, the 2-core CPU machine); run them on a GPU with
``pytest -m cuda``. ``SEMCOM_TEST_DEVICE=cpu`` runs them against a second CPU "device"
instead, which exercises every line here on a machine without one (a dry run of the script
that a lent GPU's few minutes go to). The reference is always the CPU; the GPU's convolutions
may use TF32 (cuDNN's default), hence tolerances of ~1e-2 on images in [0, 1].
"""

from __future__ import annotations

import json
import os

import pytest
import torch

DEV = os.environ.get("SEMCOM_TEST_DEVICE", "cuda")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEV == "cuda" and not torch.cuda.is_available(), reason="no CUDA device here"
    ),
]


def _image(h: int = 64, w: int = 96, seed: int = 0) -> torch.Tensor:
    """A smooth test picture with some texture, [1, 3, h, w] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([xx, yy, 0.5 * (xx + yy)])
    return (0.8 * base + 0.2 * torch.rand(3, h, w, generator=g)).clamp(0, 1).unsqueeze(0)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """The library's PSNR (8-bit outputs, per image), averaged over the batch."""
    from semcom.metrics import psnr

    return float(psnr(a.float().cpu(), b.float().cpu()).mean())


def _needs_taef2(name: str, request) -> None:
    if name.startswith("vae"):
        request.getfixturevalue("weights_root")  # skips without SEMCOM_WEIGHTS


@pytest.mark.parametrize("name", ["deepjscc", "adjscc", "vae"])
def test_codecs_agree_with_the_cpu(name, request):
    """Encode and decode of each codec on the device: the same latent and picture as the CPU."""
    from semcom.schemes import get_scheme

    _needs_taef2(name, request)
    cbr = "1/12" if name == "vae" else "1/16"
    cpu, dev = get_scheme(name, cbr), get_scheme(name, cbr, device=DEV)
    img = _image()
    snr = torch.tensor([5.0])
    with torch.no_grad():
        lat_c = cpu.codec.encode(img, snr)
        lat_d = dev.codec.encode(img.to(DEV), snr.to(DEV))
        assert lat_d.device.type == torch.device(DEV).type
        scale = lat_c.abs().max().item()
        assert (lat_d.cpu() - lat_c).abs().max().item() <= 2e-2 * scale
        out_c = cpu.codec.decode(lat_c, img.shape[-2:], snr)
        out_d = dev.codec.decode(lat_c.to(DEV), img.shape[-2:], snr.to(DEV))
    assert (out_d.cpu() - out_c).abs().max().item() < 2e-2
    assert _psnr(out_d, out_c) > 45


@pytest.mark.parametrize("name", ["deepjscc+dm", "adjscc+dm", "vae+dm"])
def test_diffusion_receivers_agree_with_the_cpu(name, request):
    """The same received latent at -5 / 0 / 5 / 15 dB through the receiver (matching, DDIM,
    the denoiser, skips) on the device and on the CPU: the same estimate."""
    from semcom.diffusion.latents import unit_power
    from semcom.diffusion.matching import db_to_linear, level_from_snr
    from semcom.schemes import get_scheme

    _needs_taef2(name, request)
    cbr = "1/12" if name.startswith("vae") else "1/16"
    cpu, dev = get_scheme(name, cbr), get_scheme(name, cbr, device=DEV)
    with torch.no_grad():
        lat = cpu.codec.encode(_image().expand(4, -1, -1, -1), torch.zeros(4))
    f = unit_power(lat)
    d = level_from_snr(db_to_linear([-5.0, 0.0, 5.0, 15.0])).float().reshape(4, 1, 1, 1)
    noise = torch.randn(f.shape, generator=torch.Generator().manual_seed(1))
    f_tilde = (1 - d).sqrt() * f + d.sqrt() * noise
    with torch.no_grad():
        est_c = cpu.receiver(f_tilde, d)
        est_d = dev.receiver(f_tilde.to(DEV), d.to(DEV))
    assert est_d.device.type == torch.device(DEV).type
    err = (est_d.cpu() - est_c).pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert (err < 1e-2).all(), err  # latents of unit power
    assert not torch.allclose(est_c[:2], ((1 - d).sqrt() * f_tilde)[:2])  # the network ran


@pytest.mark.parametrize("channel", ["awgn", "rayleigh-slow"])
@pytest.mark.parametrize("name", ["deepjscc", "adjscc+dm", "deepjscc+dm"])
def test_whole_links_run_on_the_device(name, channel):
    """transmit on the device: images back in [0, 1], float32, on the input's device; PSNR
    as on the CPU within the spread of other noise draws (the device's generator draws
    other noise than the CPU's)."""
    from semcom.channels import Channel
    from semcom.schemes import get_scheme

    img = torch.cat([_image(seed=s) for s in range(4)])
    snr = torch.tensor([0.0, 5.0, 10.0, 20.0])
    res = {}
    for where in ("cpu", DEV):
        scheme = get_scheme(name, "1/16", device=where)
        g = torch.Generator(device=where).manual_seed(0)
        t = scheme.transmit(img.to(where), Channel(channel), snr.to(where), g)
        assert t.images.dtype == torch.float32 and t.images.device.type == where.split(":")[0]
        assert 0 <= t.images.min() and t.images.max() <= 1
        res[where] = t.images
    gap = abs(_psnr(res[DEV], img) - _psnr(res["cpu"], img))
    assert gap < (1.0 if channel == "awgn" else 6.0)


def test_channel_without_a_generator_follows_the_device_seed():
    """No generator: the channel draws from the device's default generator, so
    ``torch.manual_seed`` (which seeds every device) makes the realisation repeat."""
    from semcom.channels import Channel, pack

    z = pack(torch.randn(2, 64, generator=torch.Generator().manual_seed(1))).z.to(DEV)
    out = []
    for _ in range(2):
        torch.manual_seed(3)
        y, state = Channel("rayleigh-fast")(z, 0.0)
        assert y.device == z.device
        out.append((y, state.h))
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])


def test_ldpc_chain_on_the_device():
    """JPEG + 5G LDPC (Sionna's blocks) on the device: error-free at 20 dB, so exactly the
    CPU's picture; a bare ``cuda`` device works (Sionna names GPUs ``cuda:N``)."""
    from semcom.channels import Channel
    from semcom.schemes import get_scheme

    img = torch.cat([_image(seed=s) for s in range(2)])
    out = {}
    for where in ("cpu", DEV):
        scheme = get_scheme("jpeg+ldpc:qpsk-1/2", "1/6", device=where)
        g = torch.Generator(device=where).manual_seed(0)
        t = scheme.transmit(img.to(where), Channel("awgn"), torch.tensor([20.0, 20.0]), g)
        out[where] = t.images.cpu()
    assert torch.equal(out["cpu"], out[DEV])
    assert _psnr(out[DEV], img) > 20


def test_train_on_the_device_then_load_on_the_cpu(data_root, tmp_path, monkeypatch):
    """``semcom train jscc --device`` (2 steps): the batches come pinned on a GPU, the card names
    the device and its hardware, the weights load on the CPU."""
    import semcom.train.engine as engine
    from semcom.codecs.jscc import load_jscc
    from semcom.train.cli import main

    pinned: list[bool] = []  # the batches reach the GPU from page-locked memory
    real = engine._to_device
    monkeypatch.setattr(
        engine, "_to_device", lambda b, d: (pinned.append(b.is_pinned()), real(b, d))[1]
    )
    out = tmp_path / "run"
    args = ["train", "jscc", "--model", "deepjscc", "--cbr", "1/16", "--width", "8",
            "--data", "bsds500-val", "--limit", "4", "--crop", "64", "--val-data", "bsds500-val",
            "--val-limit", "2", "--val-crop", "64", "--epochs", "1", "--batch-size", "2",
            "--device", DEV, "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["step"] == 2 and card["train"]["device"] == DEV
    assert pinned == [DEV.startswith("cuda")] * 2
    if DEV.startswith("cuda"):
        assert "GPU" in card["hardware"] or "NVIDIA" in card["hardware"], card["hardware"]
    codec = load_jscc(out, model="deepjscc", c=6)
    assert next(codec.parameters()).device.type == "cpu"


def test_train_with_persistent_workers_on_the_device(data_root, tmp_path, monkeypatch):
    """``--workers 2`` on the device for 2 epochs: the workers persist with pinned batches, and
    every batch (before its copy to the device) is the one the main process makes on the CPU
    (``--workers 0``): each epoch's crops reach the persistent workers."""
    import semcom.train.engine as engine
    from semcom.train.cli import main

    seen: list[tuple[bool, torch.Tensor]] = []
    real = engine._to_device
    monkeypatch.setattr(
        engine, "_to_device", lambda b, d: (seen.append((b.is_pinned(), b.clone())), real(b, d))[1]
    )

    def run(device: str, workers: int) -> list[tuple[bool, torch.Tensor]]:
        seen.clear()
        args = ["train", "jscc", "--model", "deepjscc", "--cbr", "1/16", "--width", "8",
                "--data", "bsds500-val", "--limit", "4", "--crop", "32", "--val-data", "none",
                "--epochs", "2", "--batch-size", "2", "--workers", str(workers),
                "--device", device, "--out", str(tmp_path / f"{device}-{workers}"), "--quiet",
                "--seed", "3"]  # fmt: skip
        assert main(args) == 0
        return list(seen)

    on_device, on_cpu = run(DEV, 2), run("cpu", 0)
    assert [p for p, _ in on_device] == [DEV.startswith("cuda")] * 4
    pairs = zip(on_device, on_cpu, strict=True)
    assert len(on_cpu) == 4 and all(torch.equal(a, b) for (_, a), (_, b) in pairs)
    assert not torch.equal(on_cpu[0][1], on_cpu[2][1])  # epoch 1's first batch is not epoch 0's


def test_eval_cli_on_the_device(data_root, tmp_path):
    """``semcom eval --device``: a diffusion receiver and an LDPC baseline over 1 photo, the
    results file records the device."""
    from semcom.cli import main

    out = tmp_path / "r.json"
    args = ["eval", "--scheme", "deepjscc+dm", "--scheme", "jpeg+ldpc:qpsk-1/2", "--cbr", "1/16",
            "--dataset", "bsds500-val", "--limit", "1", "--snr", "0", "15", "--metrics", "psnr",
            "--device", DEV, "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    r = json.loads(out.read_text())
    assert [run["scheme"] for run in r["runs"]] == ["deepjscc+dm", "jpeg+ldpc:qpsk-1/2"]
    assert all(len(run["psnr"]) == 2 for run in r["runs"])
    assert DEV.split(":")[0] in json.dumps(r["meta"])
