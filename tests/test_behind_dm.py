"""A decoder trained behind the diffusion receiver (``semcom train jscc --behind-dm``, the CDDM
recipe): the frozen encoder, the card, the zoo lookup and its use by the ``X+dm`` scheme."""

from __future__ import annotations

import json
from pathlib import Path

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
        mp.setattr("semcom.zoo.catalog.ZOO_DIR", zoo)
        mp.setenv("XDG_CACHE_HOME", str(root / "cache"))

        def train(*args: str) -> None:
            assert semcom_main(["train", *args]) == 0

        train("jscc", *common, "--max-steps", "2", "--out", str(runs / "base"))
        cut = {"allow_unfinished": True}  # runs of a few steps, stopped by --max-steps
        export_to_zoo(runs / "base", "adjscc-tiny", **cut)
        # the denoiser and estimator on the 6 bundled samples (not Kodak's 24 larger images:
        # every image is encoded at each --encode-snr, flipped too for training)
        latent = ["--codec", "adjscc", "--cbr", "1/16", "--data", "samples", "--val-data",
                  "samples", "--crop", "8", "--repeats", "1", "--encode-snr", "0", "10",
                  "--epochs", "1", "--batch-size", "4", "--quiet"]  # fmt: skip
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
    monkeypatch.setattr("semcom.zoo.catalog.ZOO_DIR", zoo)
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
    monkeypatch.setattr("semcom.zoo.catalog.ZOO_DIR", zoo)
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


@pytest.mark.slow
def test_a_user_zoo_decoder_is_taken_by_name_only(tiny_zoo, monkeypatch, tmp_path):
    """A behind-dm decoder in a user zoo ($SEMCOM_ZOO) does not change what the default
    ``X+dm`` runs (``--dm-decoder auto``, same label): it is loaded by name."""
    import shutil

    from semcom.codecs.jscc import load_jscc
    from semcom.diffusion.registry import build_dm_link

    zoo, runs = tiny_zoo
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    shutil.copytree(zoo, shipped)
    user.mkdir()
    for ext in (".json", ".safetensors"):  # the decoder moves to the user zoo
        shutil.move(shipped / f"adjscc-tiny-dmdec{ext}", user / f"adjscc-tiny-dmdec{ext}")
    monkeypatch.setattr("semcom.zoo.catalog.ZOO_DIR", shipped)
    monkeypatch.setenv("SEMCOM_ZOO", str(user))
    cpu = torch.device("cpu")
    want_ft, want_base = load_jscc(runs / "ft").state_dict(), load_jscc(runs / "base").state_dict()
    for link, want in (
        (build_dm_link("adjscc", 1 / 16, cpu), want_base),
        (build_dm_link("adjscc", 1 / 16, cpu, dm_decoder="adjscc-tiny-dmdec"), want_ft),
    ):
        got = link.codec.state_dict()
        assert all(torch.equal(got[k], want[k].to(got[k].dtype)) for k in want)


def test_a_shipped_dm_decoder_comes_before_a_user_zoos(tiny_zoo, monkeypatch, tmp_path):
    """Both zoos hold a decoder trained behind the denoiser (a user's copy of the shipped one,
    behind a copy of the shipped denoiser): the lookup picks the shipped one."""
    import shutil

    from semcom.zoo import find_dm_decoder

    zoo, _ = tiny_zoo
    user = tmp_path / "user"
    user.mkdir()
    card = json.loads((zoo / "adjscc-tiny-dmdec.json").read_text())
    (user / "my-dmdec.json").write_text(json.dumps({**card, "name": "my-dmdec"}))
    shutil.copy(zoo / "adjscc-tiny-dmdec.safetensors", user / "my-dmdec.safetensors")
    monkeypatch.setattr("semcom.zoo.catalog.ZOO_DIR", zoo)
    monkeypatch.setenv("SEMCOM_ZOO", str(user))
    sha = card["decoder_behind_dm"]["denoiser_sha256"]
    for users in (True, False):
        assert find_dm_decoder("adjscc", 1 / 16, sha, users=users).name == "adjscc-tiny-dmdec"


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


@pytest.fixture()
def user_zoo(tmp_path, monkeypatch):
    """A user zoo ($SEMCOM_ZOO) with one's own DeepJSCC at 1/16 (``my-jscc``, width 8), a
    denoiser on its latents (``my-dn``) and a decoder trained behind it (``my-bd1``): files
    and cards as the trainers write them, untrained weights."""
    from safetensors.torch import save_file

    import semcom.zoo
    from semcom.codecs.jscc import build_jscc, jscc_metadata
    from semcom.diffusion.denoiser import DenoiserConfig, LatentUNet
    from semcom.fingerprint import codec_fingerprint
    from semcom.zoo import sha256_file

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    monkeypatch.setenv("SEMCOM_ZOO", str(zoo))
    # the shipped zoo (tiny_zoo, module-scoped, points ZOO_DIR elsewhere while it lives)
    monkeypatch.setattr(
        "semcom.zoo.catalog.ZOO_DIR", Path(semcom.zoo.__file__).parent / "checkpoints"
    )
    torch.manual_seed(0)

    def save(name: str, module: torch.nn.Module, meta: dict, **card) -> None:
        tensors = {k: v.contiguous() for k, v in module.state_dict().items()}
        save_file(tensors, str(zoo / f"{name}.safetensors"), meta)
        card = {"format": "semcom-zoo-v1", "name": name, "cbr": 1 / 16, "snr_train": "10",
                "channel": {"name": "awgn"}, "data": {"train": "kodak"}, **card}  # fmt: skip
        (zoo / f"{name}.json").write_text(json.dumps(card))

    codec = build_jscc("deepjscc", 6, 8)
    save("my-jscc", codec, {**jscc_metadata(codec), "task": "jscc"}, model="deepjscc")
    fp = codec_fingerprint(codec)
    den = LatentUNet(DenoiserConfig(channels=6, width=16, mults=(1, 2), blocks=1, emb_dim=32))
    meta = {"task": "denoiser", "denoiser_config": json.dumps(den.config.to_dict()),
            "codec": "deepjscc", "cbr": "1/16", "codec_fingerprint": fp}  # fmt: skip
    save("my-dn", den, meta, model="denoiser", codec={"name": "deepjscc", "cbr": "1/16",
         "fingerprint": fp})  # fmt: skip
    bd = build_jscc("deepjscc", 6, 8, dm_side=True)
    bd.load_state_dict(codec.state_dict(), strict=False)
    behind = {"init": "my-jscc", "denoiser": "my-dn",
              "denoiser_sha256": sha256_file(zoo / "my-dn.safetensors")}  # fmt: skip
    save("my-bd1", bd, {**jscc_metadata(bd), "task": "jscc"}, model="deepjscc",
         decoder_behind_dm=behind)  # fmt: skip
    return zoo


def test_denoiser_of_another_codec_is_named_before_its_decoder_is_looked_up(user_zoo):
    """A zoo denoiser trained on one's own DeepJSCC, used with the shipped one: the denoiser's
    codec mismatch is reported (not the width of the decoder trained behind it), whether the
    denoiser is given by zoo name or by file; with its own codec it runs, with that decoder."""
    from semcom.schemes import get_scheme

    for ref in ("my-dn", str(user_zoo / "my-dn.safetensors")):
        with pytest.raises(ValueError, match=r"trained on latents of codec weights") as e:
            get_scheme("deepjscc+dm", "1/16", denoiser_path=ref)
        assert "my-bd1" not in str(e.value)
    link = get_scheme("deepjscc+dm", "1/16", codec_path="my-jscc", denoiser_path="my-dn")
    assert link.codec.dm_side  # the decoder trained behind my-dn, found by the denoiser's hash


def test_load_denoiser_checks_the_codec_weights_it_is_given(user_zoo):
    """``codec_weights``: a denoiser trained on other weights of the same codec and CBR is
    refused; without it nothing is assumed (a shipped ``-long`` denoiser serves another 1/16
    codec than the default one and must load: an implicit check against the zoo's default
    codec refused it)."""
    from semcom.codecs.jscc import load_jscc
    from semcom.diffusion.checkpoint import load_denoiser
    from semcom.zoo import load_codec

    shipped = load_codec("deepjscc", "1/16")
    with pytest.raises(ValueError, match=r"codec weights [0-9a-f]{12}, but this codec's weights"):
        load_denoiser("my-dn", codec="deepjscc", cbr="1/16", codec_weights=shipped)
    mine = load_jscc(user_zoo / "my-jscc.safetensors")
    load_denoiser("my-dn", codec="deepjscc", cbr="1/16", codec_weights=mine)  # its own: fine
    load_denoiser("my-dn", codec="deepjscc", cbr="1/16")  # none given: nothing checked
    load_denoiser("denoiser-deepjscc-c6-bsds-long", codec="deepjscc", cbr="1/16")


def test_plain_scheme_refuses_a_decoder_trained_behind_the_receiver(user_zoo):
    from semcom.schemes import get_scheme

    want = r"behind the diffusion receiver.*--scheme deepjscc\+dm --codec my-jscc --denoiser my-dn --dm-decoder my-bd1"  # noqa: E501
    for scheme in ("deepjscc", "deepjscc+dm"):
        with pytest.raises(ValueError, match=want):
            get_scheme(scheme, "1/16", codec_path="my-bd1")
    get_scheme("deepjscc", "1/16", codec_path="my-jscc")  # a plain codec of one's own: fine


def test_latent_model_and_codec_given_for_each_other_are_named(user_zoo):
    from semcom.diffusion.checkpoint import load_denoiser
    from semcom.zoo import load_codec

    with pytest.raises(ValueError, match="is a denoiser checkpoint, not a codec"):
        load_codec("deepjscc", ref="my-dn")
    with pytest.raises(ValueError, match="is a deepjscc codec checkpoint, not a denoiser"):
        load_denoiser("my-jscc")
