"""Choosing a codec checkpoint other than the shipped default: ``--codec REF`` on eval (a zoo
name, a run folder or a file) and ``--codec-weights REF`` on the latent-model trainers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from semcom.channels import Channel
from semcom.cli import main
from semcom.diffusion.registry import build_dm_link
from semcom.fingerprint import codec_fingerprint
from semcom.schemes import get_scheme, list_schemes
from semcom.zoo import (
    codec_snr_train,
    list_checkpoints,
    load_codec,
    read_card,
    sha256_file,
    trained_data,
)


def _run_folder(tmp_path: Path, entry: str, snr_train: str, nudge: float = 0.0) -> Path:
    """A run folder holding the zoo entry ``entry``'s weights (one weight moved by ``nudge``)
    and a card saying it was trained at ``snr_train``."""
    (e,) = [c for c in list_checkpoints() if c.name == entry]
    run = tmp_path / f"run-{entry}-{nudge}"
    run.mkdir()
    state = load_file(str(e.weights))
    if nudge:
        k = next(iter(state))
        state[k] = state[k].clone()
        state[k].view(-1)[0] += nudge
    save_file(state, str(run / "model.safetensors"))
    card = {"model_config": e.card["model_config"], "cbr": e.cbr, "snr_train": snr_train}
    (run / "card.json").write_text(json.dumps(card))
    return run


def test_load_codec_ref_checks_model_and_cbr(tmp_path):
    run = _run_folder(tmp_path, "deepjscc-c8-cifar10-awgn10", "7")
    shipped = load_codec("deepjscc", 1 / 12)
    for ref in (run, run / "model.safetensors", "deepjscc-c8-cifar10-awgn10"):
        codec = load_codec("deepjscc", None, ref=ref)
        assert abs(codec.cbr - 1 / 12) < 1e-9
        assert codec_fingerprint(codec) == codec_fingerprint(shipped)
    assert load_codec("deepjscc", 1 / 12, ref=run).c == 8  # its own CBR may be given
    with pytest.raises(ValueError, match=r"CBR 1/12, but --cbr 1/16"):
        load_codec("deepjscc", 1 / 16, ref=run)
    with pytest.raises(ValueError, match="model is 'deepjscc' in the file but 'adjscc'"):
        load_codec("adjscc", None, ref=run)
    with pytest.raises(ValueError, match="neither a zoo name"):
        load_codec("deepjscc", None, ref=tmp_path / "missing")
    # the training SNR comes from the chosen checkpoint's card, not the shipped one's
    assert codec_snr_train("deepjscc", 1 / 12, run) == "7"
    assert codec_snr_train("deepjscc", 1 / 12, "deepjscc-c8-cifar10-awgn10") == "10"
    assert codec_snr_train("deepjscc", 1 / 12) == "10"
    # the training data a card names: a zoo card's data block, a run card's config, else unknown
    assert trained_data(read_card("deepjscc-c8-cifar10-awgn10")[1]) == "cifar10-train"
    assert trained_data(read_card(run)[1]) == "unknown"
    assert trained_data({"config": {"data": "my-set"}}) == "my-set"
    (run / "card.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read its card"):
        codec_snr_train("deepjscc", 1 / 12, run)


def test_schemes_run_the_chosen_codec(tmp_path):
    """deepjscc with ``codec_path`` = a copy of the shipped weights transmits exactly as the
    shipped scheme; deepjscc+dm stops at the copy's own training SNR; a codec of other weights
    is refused by the shipped denoiser (its latents are not the denoiser's); vae+dm takes none."""
    same = _run_folder(tmp_path, "deepjscc-c6-bsds-awgn10", "5")
    other = _run_folder(tmp_path, "deepjscc-c6-bsds-awgn10", "10", nudge=1e-2)
    img = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    snr = torch.tensor([3.0])
    a = get_scheme("deepjscc", None, codec_path=str(same))
    b = get_scheme("deepjscc", 1 / 16)
    ya = a.transmit(img, Channel("awgn"), snr, torch.Generator().manual_seed(1)).images
    yb = b.transmit(img, Channel("awgn"), snr, torch.Generator().manual_seed(1)).images
    assert torch.equal(ya, yb)
    yo = get_scheme("deepjscc", None, codec_path=str(other)).transmit(
        img, Channel("awgn"), snr, torch.Generator().manual_seed(1)
    )
    assert not torch.equal(yo.images, yb)
    assert get_scheme("deepjscc+dm", None, codec_path=str(same)).receiver.stop_snr_db == 5.0
    with pytest.raises(ValueError, match=r"codec weights 111ed5e4f24a.*give one trained on it"):
        get_scheme("deepjscc+dm", None, codec_path=str(other))
    (vae_dm,) = [s for s in list_schemes() if s.name == "vae+dm"]
    assert "codec_path" not in vae_dm.options
    with pytest.raises(ValueError, match="does not apply"):
        build_dm_link("vae", None, torch.device("cpu"), codec_path=str(same))


def test_eval_codec_option_labels_the_curve(tmp_path, capsys):
    out = tmp_path / "r.json"
    common = ["--dataset", "kodak", "--limit", "1", "--crop", "64", "--snr", "10"]
    common += ["--metrics", "psnr", "--out", str(out), "--quiet"]
    assert main(["eval", "--scheme", "deepjscc", "--cbr", "1/16", *common]) == 0
    plain = json.loads(out.read_text())["runs"][0]
    out.unlink()
    rc = main(["eval", "--scheme", "deepjscc", "--codec", "deepjscc-c6-bsds-awgn10", *common])
    assert rc == 0
    run = json.loads(out.read_text())["runs"][0]
    assert run["scheme"] == "deepjscc[codec=deepjscc-c6-bsds-awgn10]"
    assert run["cbr_str"] == "1/16" and run["psnr"] == plain["psnr"]
    assert run["weights"] == plain["weights"]
    capsys.readouterr()
    out.unlink()  # (an existing results file of another command is refused first)
    assert main(["eval", "--scheme", "vae", "--codec", "deepjscc-c6-bsds-awgn10", *common]) == 2
    assert "--codec applies to the schemes adjscc, adjscc+dm" in capsys.readouterr().err


def test_latent_tasks_train_on_the_chosen_codec(tmp_path, monkeypatch):
    """``codec_weights`` makes the denoiser task encode with that checkpoint: its latents, its
    fingerprint in the metadata, its CBR in the config; the TAEF2 takes no weights."""
    from semcom.diffusion.denoiser import DenoiserConfig, LatentUNet
    from semcom.train.denoiser import DenoiserTask, DenoiserTaskConfig, codec_for

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 32, 32, generator=g) for _ in range(2)]
    monkeypatch.setattr("semcom.data.get_dataset", lambda name: images)
    other = _run_folder(tmp_path, "deepjscc-c6-bsds-awgn10", "10", nudge=1e-2)
    codec = load_codec("deepjscc", None, ref=other)
    task = DenoiserTask(DenoiserTaskConfig(codec="deepjscc", codec_weights=str(other)))
    task._load()
    assert task.config.cbr == "1/16"
    assert (
        task.codec_fp
        == codec_fingerprint(codec)
        != codec_fingerprint(load_codec("deepjscc", 1 / 16))
    )
    with torch.inference_mode():
        torch.testing.assert_close(task._val[0], codec.encode(images[0][None])[0])
    meta = task.model_metadata(
        LatentUNet(DenoiserConfig(channels=6, width=8, mults=(1,), blocks=1))
    )
    assert meta["codec_fingerprint"] == codec_fingerprint(codec) and meta["cbr"] == "1/16"
    with pytest.raises(ValueError, match="does not apply"):
        codec_for("vae", None, ref=str(other))


def test_train_denoiser_on_a_chosen_codec_resumes_and_serves_it(tmp_path, monkeypatch):
    """``semcom train denoiser --codec deepjscc --codec-weights RUN`` (on cached latents of
    that codec) records the codec's fingerprint and CBR, resumes from its card alone, and the
    receiver takes it for ``--codec RUN``, not for the shipped codec."""
    from semcom.diffusion.latents import save_latents
    from semcom.train.denoiser import latent_cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    other = _run_folder(tmp_path, "deepjscc-c6-bsds-awgn10", "10", nudge=1e-2)
    fp = codec_fingerprint(load_codec("deepjscc", None, ref=other))
    g = torch.Generator().manual_seed(0)
    for data, n in (("bsds500-train", 4), ("bsds500-val", 2)):
        lat = [torch.randn(6, 8, 12, generator=g) for _ in range(n)]
        path = latent_cache_path("deepjscc", "1/16", data, fp, flips=data == "bsds500-train")
        save_latents(lat, path, {"codec": "deepjscc"})
    out = tmp_path / "den"
    argv = ["train", "denoiser", "--codec", "deepjscc", "--codec-weights", str(other),
            "--crop", "4", "--repeats", "1", "--width", "16", "--batch-size", "2",
            "--max-steps", "2", "--epochs", "1", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["config"]["codec_weights"] == str(other) and card["config"]["cbr"] == "1/16"
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["codec_fingerprint"] == fp
    resume = ["train", "denoiser", "--resume", str(out), "--epochs", "2", "--max-steps", "4"]
    assert main([*resume, "--quiet"]) == 0
    assert json.loads((out / "card.json").read_text())["step"] == 4
    # a run folder is a denoiser reference (its weights are hashed to find a tuned decoder)
    assert sha256_file(out) == sha256_file(out / "model.safetensors")
    link = get_scheme("deepjscc+dm", None, codec_path=str(other), denoiser_path=str(out))
    assert link.receiver is not None
    with pytest.raises(ValueError, match=f"codec weights {fp}"):
        get_scheme("deepjscc+dm", 1 / 16, denoiser_path=str(out))


def test_a_variant_at_the_same_cbr_is_chosen_by_name_only(tmp_path):
    """Two entries at one model, CBR and channel: the base name stays the default, the variant
    (``<name>-long``) loads by name."""
    from semcom.zoo import find_checkpoint, format_table

    (base,) = [e for e in list_checkpoints() if e.name == "deepjscc-c6-bsds-awgn10"]
    for name, nudge in (("dj", 0.0), ("dj-long", 1e-2)):
        state = load_file(str(base.weights))
        k = next(iter(state))
        state[k].view(-1)[0] += nudge
        save_file(state, str(tmp_path / f"{name}.safetensors"))
        (tmp_path / f"{name}.json").write_text(json.dumps({**base.card, "name": name}))
    assert find_checkpoint("deepjscc", 1 / 16, zoo_dir=tmp_path).name == "dj"
    table = format_table(list_checkpoints(tmp_path)).splitlines()
    assert table[1].startswith("dj ") and table[2].startswith("dj-long *")
    assert table[-1].startswith("* a variant") and "--codec NAME" in table[-1]
    assert "*" not in format_table(list_checkpoints(tmp_path)[:1])
    default = load_codec("deepjscc", 1 / 16, zoo_dir=tmp_path)
    variant = load_codec("deepjscc", 1 / 16, zoo_dir=tmp_path, ref="dj-long")
    assert codec_fingerprint(default) == codec_fingerprint(load_codec("deepjscc", 1 / 16))
    assert codec_fingerprint(variant) != codec_fingerprint(default)


def test_cbr_as_a_number_or_text_everywhere():
    """1/16, "1/16" and "0.0625" name one CBR in every loader (a notebook passes either)."""
    from semcom.diffusion.checkpoint import find_denoiser, load_denoiser
    from semcom.zoo import load_codec

    assert get_scheme("deepjscc", "1/16").codec.cbr == get_scheme("deepjscc", 1 / 16).codec.cbr
    assert load_codec("deepjscc", "0.0625").cbr == 1 / 16
    entry = find_denoiser("deepjscc", 1 / 16)
    assert entry.name == find_denoiser("deepjscc", "1/16").name
    load_denoiser(entry.weights, codec="deepjscc", cbr=1 / 16)  # a float is the same CBR
    with pytest.raises(ValueError, match="at CBR 1/16, not 1/12"):
        load_denoiser(entry.weights, codec="deepjscc", cbr=1 / 12)
    with pytest.raises(ValueError, match="invalid CBR 'x'"):
        get_scheme("deepjscc", "x")


def test_fingerprint_of_networks_without_weights_names_the_class():
    """Two codecs without parameters must not share one fingerprint (both were the SHA-256 of
    nothing, so results and caches of one were credited to the other)."""

    class A(torch.nn.Module):
        pass

    class B(torch.nn.Module):
        pass

    assert codec_fingerprint(A()) != codec_fingerprint(B())
    assert codec_fingerprint(A()) == codec_fingerprint(A())
    assert codec_fingerprint(A()) != "e3b0c44298fc"  # SHA-256 of empty input


def test_eval_labels_each_jscc_cbr_as_its_own_curve(tmp_path) -> None:
    """deepjscc comes in one checkpoint per CBR: an eval at two CBRs gives two runs labelled
    1/16 and 1/12 (not one unlabelled run, the second CBR dropped as a duplicate)."""
    out = tmp_path / "r.json"
    argv = ["eval", "--scheme", "deepjscc", "--cbr", "1/16", "--cbr", "1/12", "--dataset",
            "kodak", "--limit", "1", "--crop", "32", "--snr", "10", "--metrics", "psnr",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    runs = json.loads(out.read_text())["runs"]
    assert sorted(r["cbr_str"] for r in runs) == ["1/12", "1/16"]
    assert all(r["cbr"] is not None for r in runs)
