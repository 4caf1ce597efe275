"""DeepJSCC / ADJSCC codecs: CBR mapping, shapes, SNR adaptivity, the training link path,
checkpoint loading and the zoo registry."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from semcom.channels import Channel, pack
from semcom.codecs.jscc import (
    ADJSCC,
    DeepJSCC,
    build_jscc,
    cbr_for_channels,
    channels_for_cbr,
    differentiable_link,
    jscc_metadata,
    load_jscc,
)
from semcom.link import AnalogLink

W = 8  # tiny hidden width: fast on 2 CPU cores


@pytest.mark.parametrize(("cbr", "c"), [(1 / 6, 16), (1 / 12, 8), (1 / 16, 6), ("1/16", 6)])
def test_cbr_channels(cbr, c):
    assert channels_for_cbr(cbr) == c
    assert math.isclose(cbr_for_channels(c) * 96, c)


def test_cbr_not_integer_lists_nearest():
    with pytest.raises(ValueError, match="nearest valid CBRs") as e:
        channels_for_cbr(1 / 10)  # c = 9.6
    assert "3/32 (c=9)" in str(e.value) and "5/48 (c=10)" in str(e.value)
    with pytest.raises(ValueError, match="1/96"):
        channels_for_cbr(1 / 200)
    with pytest.raises(ValueError):
        channels_for_cbr(-1.0)


@pytest.mark.parametrize("model", ["deepjscc", "adjscc"])
@pytest.mark.parametrize("hw", [(32, 32), (128, 128), (512, 768), (33, 17)])
def test_shapes_roundtrip(model, hw):
    torch.manual_seed(0)
    codec = build_jscc(model, 6, width=W).eval()
    x = torch.rand(1, 3, *hw)
    snr = torch.tensor([10.0])
    with torch.no_grad():
        z = codec.encode(x, snr)
        assert tuple(z.shape[1:]) == codec.latent_shape(*hw)
        assert z.shape[1:] == (6, math.ceil(hw[0] / 4), math.ceil(hw[1] / 4))
        y = codec.decode(z, hw, snr)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    if hw[0] % 4 == 0 and hw[1] % 4 == 0:
        rep = AnalogLink(codec).cbr(*hw, Channel("awgn"))
        assert math.isclose(rep.cbr, 1 / 16)


def test_adjscc_depends_on_snr():
    torch.manual_seed(0)
    codec = ADJSCC(8, width=W).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        z0 = codec.encode(x, torch.tensor([0.0, 0.0]))
        z1 = codec.encode(x, torch.tensor([20.0, 20.0]))
        assert not torch.allclose(z0, z1)
        assert not torch.allclose(
            codec.decode(z0, (32, 32), torch.zeros(2)),
            codec.decode(z0, (32, 32), torch.full((2,), 20.0)),
        )
        # +inf (noiseless) is accepted: clamped before the AF modules
        assert torch.isfinite(codec.encode(x, torch.tensor([math.inf] * 2))).all()
    with pytest.raises(ValueError, match="snr_db"):
        codec.encode(x)
    assert codec.snr_adaptive and not DeepJSCC(8, W).snr_adaptive
    # roundtrip tells encoder and decoder the same SNR (it could not be told one before)
    snr = torch.tensor([0.0, 0.0])
    with torch.no_grad():
        want = codec.decode(codec.encode(x, snr), (32, 32), snr)
    assert torch.equal(codec.roundtrip(x, snr), want)
    with pytest.raises(ValueError, match="snr_db"):
        codec.roundtrip(x)


def test_codec_does_not_normalise_but_pack_does():
    torch.manual_seed(0)
    codec = DeepJSCC(16, width=W).eval()
    x = torch.rand(3, 3, 32, 32) * torch.tensor([1.0, 0.1, 0.5]).reshape(3, 1, 1, 1)
    with torch.no_grad():
        z = codec.encode(x) * torch.tensor([1.0, 100.0, 0.01]).reshape(3, 1, 1, 1)
    energy = pack(z).z.abs().pow(2).mean(dim=1)
    torch.testing.assert_close(energy, torch.ones(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("model", ["deepjscc", "adjscc"])
@pytest.mark.parametrize("channel", ["awgn", "rayleigh-slow", "rayleigh-fast"])
@pytest.mark.parametrize("snr", [math.inf, 5.0])
def test_training_path_equals_link(model, channel, snr):
    """The differentiable training path is the AnalogLink test path (same noise draws)."""
    torch.manual_seed(0)
    codec = build_jscc(model, 8, width=W).eval()
    x = torch.rand(2, 3, 36, 28)
    ch = Channel(channel)
    out_train = codec(x, ch, snr, torch.Generator().manual_seed(3))
    out_link = AnalogLink(codec).transmit(x, ch, snr, torch.Generator().manual_seed(3)).images
    torch.testing.assert_close(out_train.detach(), out_link, atol=1e-6, rtol=0)
    if snr == math.inf:
        with torch.no_grad():
            z = codec.encode(x, torch.full((2,), snr))
            lat = differentiable_link(z, ch, snr)
            ref = z / z.reshape(2, -1).pow(2).mean(1).sqrt().reshape(2, 1, 1, 1)
            if channel == "awgn":
                torch.testing.assert_close(lat, ref, atol=1e-5, rtol=0)
            dec = codec.decode(lat, (36, 28), torch.full((2,), snr))
        torch.testing.assert_close(dec, out_link, atol=1e-6, rtol=0)


@pytest.mark.parametrize("channel", ["awgn", "rayleigh-fast"])
def test_gradients_flow_through_channel(channel):
    torch.manual_seed(0)
    codec = DeepJSCC(8, width=W)
    x = torch.rand(2, 3, 32, 32)
    y = codec(x, Channel(channel), torch.tensor([0.0, 10.0]), torch.Generator().manual_seed(0))
    ((y - x) ** 2).mean().backward()
    g = codec.enc[0].weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("model", ["deepjscc", "adjscc"])
@pytest.mark.parametrize("dm_side", [False, True])
def test_training_behind_a_receiver_moves_only_the_decoder(model, dm_side):
    """forward(..., receiver=R) = the AnalogLink test path with receiver R (same noise draws),
    gradients reach only the decoder; a ``dm_side`` decoder reads the LMMSE latent and R's
    output, and starts as the plain decoder (zero side branch)."""
    torch.manual_seed(0)
    codec = build_jscc(model, 8, width=W, dm_side=dm_side)
    x = torch.rand(2, 3, 32, 28)
    ch = Channel("rayleigh-fast")
    snr = torch.tensor([0.0, 10.0])

    def shrink(f_tilde, d, generator=None):  # a receiver: a nonlinear latent map
        return torch.tanh((1.0 - d).sqrt() * f_tilde)

    out = codec(x, ch, snr, torch.Generator().manual_seed(3), receiver=shrink)
    with torch.no_grad():
        ref = AnalogLink(codec.eval(), shrink).transmit(
            x, ch, snr, torch.Generator().manual_seed(3)
        )
        plain = AnalogLink(codec).transmit(x, ch, snr, torch.Generator().manual_seed(3)).images \
            if dm_side else None  # fmt: skip
    torch.testing.assert_close(out.detach(), ref.images, atol=1e-6, rtol=0)
    if dm_side:  # zero side branch: the plain decoder of the LMMSE latent
        torch.testing.assert_close(out.detach(), plain, atol=1e-6, rtol=0)
    ((out - x) ** 2).mean().backward()
    grads = {n: p.grad for n, p in codec.named_parameters()}
    assert all(g is None for n, g in grads.items() if n.startswith("enc"))
    assert grads["dec_out.weight"] is not None and grads["dec_out.weight"].abs().sum() > 0
    if dm_side:
        assert grads["dec_side.weight"].abs().sum() > 0


def test_dm_side_decoder_needs_the_denoised_latent_and_round_trips(tmp_path):
    torch.manual_seed(0)
    codec = build_jscc("adjscc", 8, width=W, dm_side=True).eval()
    with torch.no_grad():
        codec.dec_side.weight.normal_(0, 0.1)
    lat, side = torch.randn(1, 8, 6, 5), torch.randn(1, 8, 6, 5)
    snr = torch.tensor([3.0])
    with pytest.raises(ValueError, match="side"):
        codec.decode(lat, (24, 20), snr)
    _save(codec, tmp_path / "m.safetensors")
    back = load_jscc(tmp_path / "m.safetensors")
    assert back.dm_side and back.config()["dm_side"] is True
    torch.testing.assert_close(
        back.decode(lat, (24, 20), snr, side), codec.decode(lat, (24, 20), snr, side)
    )
    assert not torch.allclose(
        codec.decode(lat, (24, 20), snr, side), codec.decode(lat, (24, 20), snr, lat)
    )


# --------------------------------------------------------------------------- checkpoints
def _save(codec, path, meta=None):
    state = {k: v.contiguous() for k, v in codec.state_dict().items()}
    save_file(state, str(path), metadata=meta if meta is not None else jscc_metadata(codec))


def test_load_roundtrip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    codec = ADJSCC(6, width=W)
    p = tmp_path / "m.safetensors"
    _save(codec, p)
    back = load_jscc(p, model="adjscc", c=6, width=W)
    for k, v in codec.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v)
    with pytest.raises(ValueError, match=r"c is 6 in the file but 8 was requested.*CBR 1/16"):
        load_jscc(p, model="adjscc", c=8)
    with pytest.raises(ValueError, match="model is 'adjscc' in the file but 'deepjscc'"):
        load_jscc(p, model="deepjscc")
    # metadata that lies about the architecture: state-dict mismatch is named
    _save(codec, p, {**jscc_metadata(codec), "model": "deepjscc"})
    with pytest.raises(ValueError, match="does not match the deepjscc architecture"):
        load_jscc(p)
    _save(codec, p, {"format": "x"})
    with pytest.raises(ValueError, match="does not describe its architecture"):
        load_jscc(p)


@pytest.mark.parametrize("model", ["deepjscc", "adjscc"])
def test_loaded_codecs_run_channels_last_with_the_same_results(tmp_path, model):
    """load_jscc returns a channels-last codec (faster on CPU): same latents and images as the
    contiguous one to float rounding, contiguous outputs, the same fingerprint, and its
    state saves as is."""
    from semcom.fingerprint import codec_fingerprint

    torch.manual_seed(0)
    codec = build_jscc(model, 6, width=W).eval()
    _save(codec, tmp_path / "m.safetensors")
    back = load_jscc(tmp_path / "m.safetensors")
    assert back.layout is torch.channels_last and codec.layout is torch.contiguous_format
    assert back.enc[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert codec_fingerprint(back) == codec_fingerprint(codec)
    x, snr = torch.rand(2, 3, 30, 22), torch.tensor([0.0, 12.0])
    with torch.no_grad():
        lat, lat_cl = codec.encode(x, snr), back.encode(x, snr)
        img, img_cl = codec.decode(lat, (30, 22), snr), back.decode(lat, (30, 22), snr)
    assert lat_cl.is_contiguous() and img_cl.is_contiguous()
    torch.testing.assert_close(lat_cl, lat, rtol=0, atol=1e-5)
    torch.testing.assert_close(img_cl, img, rtol=0, atol=1e-5)
    _save(back, tmp_path / "again.safetensors")
    assert codec_fingerprint(load_jscc(tmp_path / "again.safetensors")) == codec_fingerprint(codec)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adjscc_warm_start_computes_the_deepjscc_at_every_snr(seed):
    torch.manual_seed(seed)
    src = DeepJSCC(6, width=W)
    for p in src.parameters():  # away from the default init: PReLU slopes, biases
        p.data.add_(0.1 * torch.randn_like(p))
    dst = ADJSCC.from_deepjscc(src)
    x = torch.rand(3, 3, 20, 28)
    z = src.encode(x)
    for snr in (-10.0, 0.0, 7.5, 20.0, math.inf):
        s = torch.full((3,), snr)
        torch.testing.assert_close(dst.encode(x, s), z, rtol=0, atol=1e-6)
        torch.testing.assert_close(dst.decode(z, (20, 28), s), src.decode(z, (20, 28)))
    # the SNR dependence is learnable from the start: every AF's fc2 gets a gradient
    s = torch.linspace(-5, 20, 3)
    dst.decode(dst.encode(x, s), (20, 28), s).square().mean().backward()
    assert all(af.fc2.weight.grad.abs().sum() > 0 for af in [*dst.enc_af, *dst.dec_af])


def test_adjscc_warm_start_refuses_other_sources():
    with pytest.raises(ValueError, match="plain deepjscc"):
        ADJSCC.from_deepjscc(ADJSCC(6, width=W))
    with pytest.raises(ValueError, match="behind a receiver"):
        ADJSCC.from_deepjscc(DeepJSCC(6, width=W, dm_side=True))


def test_train_adjscc_from_a_deepjscc_checkpoint(tmp_path):
    from semcom.train.jscc import JSCCConfig, JSCCTask

    torch.manual_seed(0)
    src = DeepJSCC(6, width=W)
    p = tmp_path / "dj.safetensors"
    _save(src, p)
    task = JSCCTask(JSCCConfig(model="adjscc", cbr="1/16", width=W, init=str(p)))
    model = task.build_model()
    assert isinstance(model, ADJSCC) and task.init_info["init"] == str(p)
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(model.encode(x, torch.tensor([0.0, 15.0])), src.encode(x))
    # another CBR, or a deepjscc from an adjscc, is refused naming the mismatch
    with pytest.raises(ValueError, match="c is 6 in the file but 8"):
        JSCCTask(JSCCConfig(model="adjscc", cbr="1/12", width=W, init=str(p))).build_model()
    a = tmp_path / "adj.safetensors"
    _save(ADJSCC(6, width=W), a)
    with pytest.raises(ValueError, match="model is 'adjscc' in the file but 'deepjscc'"):
        JSCCTask(JSCCConfig(model="deepjscc", cbr="1/16", width=W, init=str(a))).build_model()


def test_corrupt_checkpoint(tmp_path):
    codec = DeepJSCC(6, width=W)
    p = tmp_path / "m.safetensors"
    _save(codec, p)
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        load_jscc(p)
    p.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        load_jscc(p)
    with pytest.raises(FileNotFoundError):
        load_jscc(tmp_path / "missing.safetensors")


# ---------------------------------------------------------------------------------- zoo
def test_zoo_empty(tmp_path, monkeypatch, capsys):
    import semcom.zoo as zoo
    from semcom.schemes import get_scheme

    monkeypatch.setattr("semcom.zoo.catalog.ZOO_DIR", tmp_path)
    assert zoo.list_checkpoints() == []
    assert "no checkpoints shipped yet" in zoo.format_table([])
    with pytest.raises(ValueError, match="no deepjscc checkpoints shipped yet"):
        get_scheme("deepjscc", 1 / 6)
    import argparse

    p = argparse.ArgumentParser()
    zoo.add_zoo_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["zoo", "list"])
    assert args.func(args) == 0
    assert "no checkpoints shipped yet" in capsys.readouterr().out


def _card(folder: Path, name: str, model: str, cbr: float, channel: str = "awgn") -> None:
    """A minimal zoo card (no weights: listing and choosing read the cards only)."""
    card = {"name": name, "model": model, "cbr": cbr, "channel": channel,
            "snr_train": "10", "data": "cifar10"}  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(card))


def test_zoo_lists_by_model_then_largest_cbr_and_chooses_the_shipped_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing: by model, then CBR largest first, then name; shipped CBRs largest first. At
    one CBR the shipped entry is the default even when a user's one is AWGN-trained, and the
    other is marked a variant; a CBR is matched within rounding of its printed form only."""
    import semcom.zoo as zoo

    shipped, user = tmp_path / "shipped", tmp_path / "user"
    _card(shipped, "d16", "deepjscc", 1 / 16, "rayleigh-slow")
    _card(shipped, "d8", "deepjscc", 1 / 8)
    _card(shipped, "a12", "adjscc", 1 / 12)
    _card(user, "d16-mine", "deepjscc", 1 / 16)
    monkeypatch.setattr("semcom.zoo.catalog.ZOO_DIR", shipped)
    monkeypatch.setenv(zoo.ZOO_ENV, str(user))
    entries = zoo.list_checkpoints()
    assert [e.name for e in entries] == ["a12", "d8", "d16", "d16-mine"]
    assert zoo.shipped_cbrs("deepjscc") == (1 / 8, 1 / 16)
    assert zoo.find_checkpoint("deepjscc", "1/16").name == "d16"
    table = zoo.format_table(entries)
    assert "d16-mine * +" in table and "d16 *" not in table
    with pytest.raises(ValueError, match="no deepjscc checkpoint for CBR"):
        zoo.find_checkpoint("deepjscc", 0.066)  # 1/16 is 0.0625: 6 % off, not rounding


def test_shipped_zoo_cards_load():
    """Every card shipped in the package loads with its weights."""
    import hashlib

    from semcom.diffusion.checkpoint import load_denoiser
    from semcom.estimation.learned import load_snr_estimator
    from semcom.zoo import list_checkpoints, load_codec

    for e in list_checkpoints():
        if "sha256" in e.card:
            assert hashlib.sha256(e.weights.read_bytes()).hexdigest() == e.card["sha256"], e.name
        if e.model in ("deepjscc", "adjscc"):
            codec = load_codec(e.model, e.cbr, channel=e.channel)
            assert math.isclose(codec.cbr, e.cbr, rel_tol=1e-3)
            assert e.test_psnr is not None and e.card["command"].startswith("semcom train jscc")
        elif e.model == "denoiser":
            load_denoiser(e.weights, codec=e.card["codec"]["name"])
            gains = e.card["test"]["gain_db"]
            assert e.summary().startswith(f"latent gain {gains[0]:+.2f}/"), e.summary()
        elif e.model == "snr-estimator":
            load_snr_estimator(e.weights, codec=e.card["codec"]["name"])
        else:
            raise AssertionError(f"unknown model {e.model!r} in the zoo ({e.name})")


def test_pad_to_multiple_replicates_the_bottom_right_edge_and_crop_undoes_it() -> None:
    """5 x 7 to a multiple of 4: (-5) mod 4 = 3 rows at the bottom, (-7) mod 4 = 1 column at
    the right, copies of the last row / column (edge replication); crop_to restores it."""
    from semcom.codecs import crop_to, pad_to_multiple

    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    xp, hw = pad_to_multiple(x, 4)
    assert hw == (5, 7) and xp.shape == (2, 3, 8, 8)
    rows, cols = [0, 1, 2, 3, 4, 4, 4, 4], [0, 1, 2, 3, 4, 5, 6, 6]
    assert torch.equal(xp, x[:, :, rows][:, :, :, cols])
    assert torch.equal(crop_to(xp, hw), x)
    same, _ = pad_to_multiple(xp, 4)  # already a multiple: unchanged
    assert torch.equal(same, xp)


@pytest.mark.parametrize("hw", [(31, 30), (35, 34)])
def test_encoder_latent_matches_latent_shape_for_every_remainder(hw: tuple[int, int]) -> None:
    """Sizes 3 and 2 past a multiple of 4 (the padding differs from H mod 4 there, and
    between H and W): the latent is [c, ceil(H/4), ceil(W/4)] and decodes back to H x W."""
    torch.manual_seed(0)
    codec = DeepJSCC(6, width=W).eval()
    with torch.no_grad():
        z = codec.encode(torch.rand(1, 3, *hw))
        assert tuple(z.shape[1:]) == codec.latent_shape(*hw)
        assert codec.decode(z, hw).shape == (1, 3, *hw)


def test_encode_refuses_images_without_three_channels() -> None:
    """A grey or RGBA batch is a ValueError naming the expected shape (not a conv error)."""
    codec = DeepJSCC(6, width=W)
    for bad in (torch.rand(1, 4, 8, 8), torch.rand(1, 1, 8, 8), torch.rand(3, 8, 8)):
        with pytest.raises(ValueError, match=r"expected images \[B, 3, H, W\]"):
            codec.encode(bad)


def test_channels_for_cbr_never_gives_zero_channels() -> None:
    """A CBR so small that 96 * CBR rounds to 0 channels is refused (not a 0-channel codec)."""
    from semcom.codecs.jscc import channels_for_cbr

    for tiny in (1e-5, 1e-9):
        with pytest.raises(ValueError, match="nearest valid CBRs: 1/96"):
            channels_for_cbr(tiny)


def test_channels_for_cbr_refuses_non_finite() -> None:
    """inf / NaN CBRs are the documented ValueError, not an OverflowError from round()."""
    from semcom.codecs.jscc import channels_for_cbr

    for bad in (math.inf, math.nan):
        with pytest.raises(ValueError, match="CBR must be positive"):
            channels_for_cbr(bad)


def test_af_module_by_hand() -> None:
    """AF weights ``sigmoid(fc2(relu(fc1([mean_hw(x), clamp(snr, -30, 50) / 10]))))``: with
    one hidden unit reading the SNR and one the spatial mean of channel 0, 20 dB scales
    channel 0 by sigmoid(2) and channel 1 by sigmoid(mean = 1); 80 dB is clamped to 50
    (sigmoid(5)), +inf too."""
    from semcom.codecs.jscc import AFModule

    af = AFModule(2)
    with torch.no_grad():
        for p in af.parameters():
            p.zero_()
        af.fc1.weight[0, 2] = 1.0  # hidden 0 <- snr / 10
        af.fc1.weight[1, 0] = 1.0  # hidden 1 <- mean of channel 0
        af.fc2.weight[0, 0] = 1.0
        af.fc2.weight[1, 1] = 1.0
    x = torch.tensor([[[[1.0, 3.0], [0.0, 0.0]], [[5.0, 5.0], [5.0, 5.0]]]])  # means 1, 5
    x = x.expand(3, -1, -1, -1)
    with torch.no_grad():
        out = af(x, torch.tensor([20.0, 80.0, math.inf]))
    w0 = torch.sigmoid(torch.tensor([2.0, 5.0, 5.0]))  # 20 dB; 80 dB and +inf clamped to 50
    w1 = torch.sigmoid(torch.ones(3))
    torch.testing.assert_close(out, x * torch.stack([w0, w1], dim=1)[:, :, None, None])


def test_differentiable_link_is_the_lmmse_estimate_at_finite_snr() -> None:
    """At 0 dB on AWGN the noise level is d = 1/(1+1) = 1/2 and the training path hands the
    decoder sqrt(1 - d) f_tilde = f_tilde / sqrt(2) (same noise draw)."""
    from semcom.codecs.jscc import differentiable_link, received_latent

    z = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(0))
    f_tilde, d = received_latent(z, Channel("awgn"), 0.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(d, torch.full_like(d, 0.5))
    lat = differentiable_link(z, Channel("awgn"), 0.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(lat, f_tilde / math.sqrt(2.0))


def test_dm_side_branch_feeds_the_first_decoder_layer() -> None:
    """The side branch adds to the first transposed convolution's output (before its PReLU):
    a branch of zero weights and bias b decodes as the plain decoder with b added to that
    layer's bias."""
    torch.manual_seed(0)
    codec = DeepJSCC(6, width=W, dm_side=True).eval()
    plain = DeepJSCC(6, width=W).eval()
    plain.load_state_dict(
        {k: v for k, v in codec.state_dict().items() if not k.startswith("dec_side")}
    )
    b = torch.linspace(-1.0, 1.0, W)
    with torch.no_grad():
        codec.dec_side.bias.copy_(b)
        plain.dec[0].bias.add_(b)
        lat = torch.randn(2, 6, 5, 4)
        side = torch.randn(2, 6, 5, 4)
        torch.testing.assert_close(
            codec.decode(lat, (20, 16), side=side), plain.decode(lat, (20, 16))
        )


def test_snr_adaptive_encoder_sees_each_snr_of_an_expanded_batch() -> None:
    """A sweep sends one image expanded over an SNR batch; the link encodes it once only for
    a codec that ignores the SNR: ADJSCC's latent depends on it, so the expanded batch gives
    what the same images stored separately give."""
    from semcom.codecs.jscc import ADJSCC

    torch.manual_seed(0)
    codec = ADJSCC(6, width=W).eval()
    one = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    snr = torch.tensor([-10.0, 30.0])
    link, ch = AnalogLink(codec), Channel("awgn")
    expanded = link.transmit(one.expand(2, -1, -1, -1), ch, snr, torch.Generator().manual_seed(2))
    separate = link.transmit(one.repeat(2, 1, 1, 1), ch, snr, torch.Generator().manual_seed(2))
    torch.testing.assert_close(expanded.images, separate.images, rtol=0, atol=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_zoo_loaders_check_the_device_like_the_cli(tmp_path):
    """A device this machine lacks: the --device ValueError, not torch's AssertionError."""
    from semcom.codecs.taef2 import load_taef2
    from semcom.diffusion.checkpoint import load_denoiser
    from semcom.zoo import load_codec

    for load in (
        lambda: load_codec("deepjscc", "1/16", device="cuda"),
        lambda: load_codec("deepjscc", ref="deepjscc-c6-bsds-awgn10", device=torch.device("cuda")),
        lambda: load_denoiser("denoiser-vae-bsds", codec="vae", device="cuda"),
        lambda: load_taef2("cuda"),
    ):
        with pytest.raises(ValueError, match="no CUDA device"):
            load()
