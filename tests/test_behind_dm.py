"""A decoder trained behind the diffusion receiver (``semcom train jscc --behind-dm``, the CDDM
recipe): the frozen encoder, the card, the zoo lookup and its use by the ``X+dm`` scheme."""

from __future__ import annotations

import json

import pytest
import torch

from semcom.cli import main as semcom_main


@pytest.fixture(scope="module")
def tiny_zoo(weights_root, data_root, tmp_path_factory):
    """A zoo holding a tiny ADJSCC, a denoiser on its latents and a decoder trained behind it."""
    from semcom.diffusion.checkpoint import export_denoiser, export_latent_model
    from semcom.zoo import export_to_zoo

    root = tmp_path_factory.mktemp("zoo")
    zoo, runs = root / "zoo", root / "runs"
    zoo.mkdir()
    common = ["--model", "adjscc", "--cbr", "1/16", "--width", "8", "--snr-train=-5:20",
              "--data", "kodak", "--crop", "32", "--val-data", "none", "--epochs", "1",
              "--batch-size", "2", "--quiet"]  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("semcom.zoo.ZOO_DIR", zoo)
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))

        def train(*args: str) -> None:
            assert semcom_main(["train", *args]) == 0

        train("jscc", *common, "--max-steps", "2", "--out", str(runs / "base"))
        cut = {"allow_unfinished": True}  # runs of a few steps, stopped by --max-steps
        export_to_zoo(runs / "base", "adjscc-tiny", **cut)
        latent = ["--codec", "adjscc", "--cbr", "1/16", "--data", "kodak", "--val-data", "kodak",
                  "--crop", "8", "--repeats", "1", "--encode-snr", "0", "10", "--epochs", "1",
                  "--batch-size", "4", "--quiet"]  # fmt: skip
        train("denoiser", *latent, "--width", "16", "--max-steps", "2", "--out", str(runs / "den"))
        export_denoiser(runs / "den", "denoiser-adjscc-tiny", **cut)
        train(
            "snr-estimator", *latent, "--width", "8", "--max-steps", "1", "--out", str(runs / "est")
        )
        export_latent_model(
            runs / "est", "snr-est-adjscc-tiny", "snr-estimator", "estimator_config", **cut
        )
        train("jscc", *common, "--init", "adjscc-tiny", "--behind-dm", "--lr", "0.01",
              "--max-steps", "3", "--out", str(runs / "ft"))  # fmt: skip
        export_to_zoo(
            runs / "ft",
            "adjscc-tiny-dmdec",
            test_data="kodak",
            test_limit=1,
            test_snrs=[0.0],
            **cut,
        )
        yield zoo, runs


@pytest.mark.slow
def test_behind_dm_run_freezes_the_encoder_and_records_its_receiver(tiny_zoo):
    from semcom.codecs.jscc import load_jscc
    from semcom.zoo import sha256_file

    zoo, runs = tiny_zoo
    base, ft = load_jscc(runs / "base").state_dict(), load_jscc(runs / "ft").state_dict()
    assert all(torch.equal(base[k], ft[k]) for k in base if k.startswith("enc"))
    assert not all(torch.equal(base[k], ft[k]) for k in base if k.startswith("dec"))
    card = json.loads((zoo / "adjscc-tiny-dmdec.json").read_text())
    info = card["decoder_behind_dm"]
    assert info["init"] == "adjscc-tiny" and info["denoiser"] == "denoiser-adjscc-tiny"
    assert info["denoiser_sha256"] == sha256_file(zoo / "denoiser-adjscc-tiny.safetensors")
    # trained behind the scheme's receiver, which skips the denoiser from 10 dB up
    from semcom.diffusion.registry import TUNED_SKIP_SNR_DB

    assert info["skip_snr_db"] == TUNED_SKIP_SNR_DB == 10.0
    assert card["test"]["psnr"][0] > 5.0  # tested behind the receiver


@pytest.mark.slow
def test_dm_scheme_uses_the_decoder_trained_behind_it(tiny_zoo, monkeypatch):
    from semcom.channels import Channel
    from semcom.codecs.jscc import load_jscc
    from semcom.diffusion.registry import build_dm_link, denoiser_file, tuned_decoder
    from semcom.zoo import find_checkpoint, list_checkpoints

    zoo, runs = tiny_zoo
    monkeypatch.setattr("semcom.zoo.ZOO_DIR", zoo)
    assert {e.name for e in list_checkpoints()} >= {"adjscc-tiny", "adjscc-tiny-dmdec"}
    assert find_checkpoint("adjscc", 1 / 16).name == "adjscc-tiny"  # plain scheme: base
    dm = build_dm_link("adjscc", 1 / 16, torch.device("cpu"))
    base = build_dm_link("adjscc", 1 / 16, torch.device("cpu"), dm_decoder="base")
    want_ft, want_base = load_jscc(runs / "ft").state_dict(), load_jscc(runs / "base").state_dict()
    for link, want in ((dm, want_ft), (base, want_base)):
        got = link.codec.state_dict()
        assert all(torch.equal(got[k], want[k].to(got[k].dtype)) for k in want)
    x = torch.rand(1, 3, 32, 32)
    out = dm.transmit(x, Channel("awgn"), 0.0, torch.Generator())
    assert out.images.shape == x.shape and torch.isfinite(out.images).all()
    # the SNR estimator, like the denoiser, is checked against the encoder it was trained on
    learned = build_dm_link("adjscc", 1 / 16, torch.device("cpu"), snr_source="learned")
    assert all(torch.equal(learned.codec.state_dict()[k], v) for k, v in want_ft.items())
    assert torch.isfinite(learned.transmit(x, Channel("awgn"), 0.0, torch.Generator()).images).all()
    # a codec with another encoder never gets that decoder
    other = load_jscc(runs / "base")
    with torch.no_grad():
        other.enc[0].weight.add_(0.1)
    with pytest.raises(ValueError, match="another encoder"):
        tuned_decoder(other, "adjscc", denoiser_file(other, "adjscc", None), "cpu")
    with pytest.raises(ValueError, match="--dm-decoder"):
        build_dm_link("adjscc", 1 / 16, torch.device("cpu"), dm_decoder="other")


@pytest.mark.slow
def test_dm_decoder_of_ones_own_is_taken_by_reference(tiny_zoo, monkeypatch, tmp_path):
    """``--dm-decoder REF``: a decoder trained behind this denoiser, given as a run folder (the
    zoo one would be chosen by ``auto`` first); refused when it is a plain codec, was trained
    behind another denoiser, or the scheme is vae+dm."""
    import shutil

    from semcom.diffusion.registry import build_dm_link

    zoo, runs = tiny_zoo
    monkeypatch.setattr("semcom.zoo.ZOO_DIR", zoo)
    cpu = torch.device("cpu")
    mine = tmp_path / "mine"
    shutil.copytree(runs / "ft", mine)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(mine / "model.safetensors"), framework="pt") as f:
        meta = dict(f.metadata() or {})
    raw = load_file(str(mine / "model.safetensors"))
    key = next(k for k in raw if k.startswith("dec"))
    raw[key] = raw[key] + 0.5  # one's own decoder: other weights than the zoo's one
    save_file(raw, str(mine / "model.safetensors"), metadata=meta)
    zoo_dec = build_dm_link("adjscc", 1 / 16, cpu).codec.state_dict()[key]
    got = build_dm_link("adjscc", 1 / 16, cpu, dm_decoder=str(mine)).codec.state_dict()[key]
    assert torch.equal(got, raw[key].to(got.dtype)) and not torch.equal(got, zoo_dec)
    with pytest.raises(ValueError, match="not a decoder trained behind a diffusion receiver"):
        build_dm_link("adjscc", 1 / 16, cpu, dm_decoder=str(runs / "base"))
    card = json.loads((mine / "card.json").read_text())
    card["decoder_behind_dm"]["denoiser_sha256"] = "0" * 64
    (mine / "card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="trained behind the denoiser 'denoiser-adjscc-tiny', not"):
        build_dm_link("adjscc", 1 / 16, cpu, dm_decoder=str(mine))
    with pytest.raises(ValueError, match=r"vae\+dm.*auto\|base"):
        build_dm_link("vae", None, cpu, dm_decoder=str(mine))


def test_behind_dm_needs_init():
    from semcom.train.jscc import JSCCConfig

    with pytest.raises(ValueError, match="--init"):
        JSCCConfig(model="adjscc", cbr="1/16", behind_dm=True)
    with pytest.raises(ValueError, match="--behind-dm only"):
        JSCCConfig(model="adjscc", cbr="1/16", denoiser="x.safetensors")
    with pytest.raises(ValueError, match="--dm-steps"):
        JSCCConfig(model="adjscc", cbr="1/16", init="x", behind_dm=True, dm_steps=0)


def test_init_reference_must_exist(tmp_path):
    from semcom.zoo import resolve_weights

    with pytest.raises(ValueError, match="neither a zoo name"):
        resolve_weights(tmp_path / "missing.safetensors")
    rc = semcom_main(
        ["train", "jscc", "--model", "adjscc", "--cbr", "1/16", "--init", "no-such-model",
         "--max-steps", "1", "--quiet", "--out", str(tmp_path / "run")]
    )  # fmt: skip
    assert rc == 2 and not (tmp_path / "run" / "model.safetensors").exists()
