"""``semcom zoo add``: exporting runs into the zoo without losing anything, with their lineage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from semcom.cli import main as semcom_main

W = 8
COMMON = ["--cbr", "1/12", "--width", str(W), "--data", "cifar10-train", "--limit", "8",
          "--val-data", "none", "--batch-size", "4", "--quiet"]  # fmt: skip


def _train(out, *args: str) -> None:
    assert semcom_main(["train", "jscc", *COMMON, *args, "--out", str(out)]) == 0


def _card(zoo, name: str) -> dict:
    return json.loads((zoo / f"{name}.json").read_text())


@pytest.fixture()
def zoo(tmp_path, monkeypatch):
    z = tmp_path / "zoo"
    z.mkdir()
    monkeypatch.setattr("semcom.zoo.catalog.ZOO_DIR", z)  # --init NAME resolves in this zoo
    return z


def test_add_tests_lists_and_never_overwrites_silently(data_root, tmp_path, zoo, capsys):
    run = tmp_path / "a"
    _train(run, "--model", "deepjscc", "--epochs", "1")
    add = ["zoo", "add", str(run), "dj-tiny", "--zoo-dir", str(zoo)]
    assert semcom_main([*add, "--test-data", "cifar10-test", "--test-limit", "4",
                        "--test-snr", "0", "10"]) == 0  # fmt: skip
    assert "dB @ 10 dB (cifar10-test, 4 images)" in capsys.readouterr().out
    card = _card(zoo, "dj-tiny")
    assert card["test"]["snr_db"] == [0.0, 10.0] and card["test"]["n_images"] == 4
    assert card["test"]["n_total"] == 10000
    assert card["test"]["psnr"][0] < card["test"]["psnr"][1]  # more noise, lower PSNR
    assert "unfinished" not in card and "continued_from" not in card and "init" not in card
    before = (zoo / "dj-tiny.safetensors").read_bytes()
    assert semcom_main([*add]) == 2  # exists: refused, nothing touched
    assert "--replace" in capsys.readouterr().err
    assert (zoo / "dj-tiny.safetensors").read_bytes() == before
    assert semcom_main(["zoo", "list"]) == 0
    assert "dj-tiny" in capsys.readouterr().out
    (tmp_path / "other").mkdir()  # a zoo folder of one's own is listed as zoo add wrote it
    assert semcom_main(["zoo", "list", "--zoo-dir", str(tmp_path / "other")]) == 0
    assert "dj-tiny" not in capsys.readouterr().out
    assert semcom_main(["zoo", "list", "--zoo-dir", str(zoo), "--json"]) == 0
    assert '"name": "dj-tiny"' in capsys.readouterr().out


def test_unfinished_run_is_refused_unless_allowed(data_root, tmp_path, zoo, capsys):
    run = tmp_path / "a"
    _train(run, "--model", "deepjscc", "--epochs", "1")
    rc = json.loads((run / "card.json").read_text())
    rc["train"]["epochs"] = 3  # what a run killed after its first of 3 epochs leaves
    (run / "card.json").write_text(json.dumps(rc))
    add = ["zoo", "add", str(run), "dj-cut", "--zoo-dir", str(zoo)]
    assert semcom_main(add) == 2
    assert "epoch 1 of 3" in capsys.readouterr().err and not (zoo / "dj-cut.json").exists()
    assert semcom_main([*add, "--allow-unfinished"]) == 0
    assert _card(zoo, "dj-cut")["unfinished"] == "epoch 1 of 3"
    # added without --test-data: said to be untested (the card's test is empty)
    assert "not tested" in capsys.readouterr().err and _card(zoo, "dj-cut")["test"] == {}


def _add(run, name: str, zoo, *flags: str) -> int:
    return semcom_main(["zoo", "add", str(run), name, "--zoo-dir", str(zoo), *flags])


def test_run_stopped_by_max_steps_before_its_last_epoch_is_unfinished(
    data_root, tmp_path, zoo, capsys
):
    """A run cut short by --max-steps (mid-epoch, or at the end of an epoch before its last)
    was shipped as finished, without --allow-unfinished and without the card's mark; one whose
    limit fell on the end of its last epoch is finished (2 steps an epoch here)."""
    run = tmp_path / "a"
    _train(run, "--model", "deepjscc", "--epochs", "2", "--max-steps", "1")
    capsys.readouterr()
    assert _add(run, "dj-cut", zoo) == 2
    err = capsys.readouterr().err
    assert "epoch 0 of 2, stopped at step 1 by --max-steps 1" in err
    assert "--allow-unfinished" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    assert not (zoo / "dj-cut.json").exists() and not (zoo / "dj-cut.safetensors").exists()
    assert _add(run, "dj-cut", zoo, "--allow-unfinished") == 0
    card = _card(zoo, "dj-cut")
    assert card["unfinished"] == "epoch 0 of 2, stopped at step 1 by --max-steps 1"
    assert (card["epochs"], card["steps"]) == (0, 1)
    resume = ["train", "jscc", "--resume", str(run), "--quiet", "--max-steps"]
    assert semcom_main([*resume, "2"]) == 0  # the limit falls on the end of epoch 1 of 2
    assert _add(run, "dj-half", zoo) == 2
    assert "epoch 1 of 2, stopped at step 2 by --max-steps 2" in capsys.readouterr().err
    assert semcom_main([*resume, "4"]) == 0  # ... and on the end of the last epoch: finished
    assert _add(run, "dj-done", zoo) == 0
    assert "unfinished" not in _card(zoo, "dj-done") and _card(zoo, "dj-done")["steps"] == 4
    done = tmp_path / "b"  # a limit it never reached: finished too
    _train(done, "--model", "deepjscc", "--epochs", "1", "--max-steps", "5")
    assert _add(done, "dj-short", zoo) == 0 and "unfinished" not in _card(zoo, "dj-short")


def test_denoiser_stopped_by_max_steps_is_unfinished(weights_root, tmp_path, monkeypatch, capsys):
    """The same for a latent model (exported by another path than a codec): a denoiser run
    stopped by --max-steps in its first of 2 epochs is refused, or marked unfinished."""
    zoo = tmp_path / "zoo"  # --zoo-dir only: its codec comes from the shipped zoo
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run = tmp_path / "den"
    assert semcom_main(["train", "denoiser", "--codec", "deepjscc", "--cbr", "1/16",
                        "--data", "samples", "--val-data", "samples", "--crop", "4",
                        "--width", "16", "--batch-size", "4", "--epochs", "2", "--max-steps", "2",
                        "--quiet", "--out", str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    assert _add(run, "den-cut", zoo) == 2
    err = capsys.readouterr().err
    assert "epoch 0 of 2, stopped at step 2 by --max-steps 2" in err
    assert "--allow-unfinished" in err and len(err.strip().splitlines()) == 1
    assert not (zoo / "den-cut.json").exists()
    assert _add(run, "den-cut", zoo, "--allow-unfinished") == 0
    assert _card(zoo, "den-cut")["unfinished"] == "epoch 0 of 2, stopped at step 2 by --max-steps 2"


def test_continuation_and_warm_start_carry_their_lineage(data_root, tmp_path, zoo):
    from semcom.zoo import sha256_file

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _train(a, "--model", "deepjscc", "--epochs", "1")
    assert semcom_main(["zoo", "add", str(a), "dj", "--zoo-dir", str(zoo)]) == 0
    first = _card(zoo, "dj")
    # continued in place from the zoo entry: the chain replays stage 1 into a, then --init a
    _train(b, "--model", "deepjscc", "--epochs", "1", "--seed", "3", "--init", "dj")
    assert semcom_main(["zoo", "add", str(b), "dj", "--zoo-dir", str(zoo)]) == 2
    assert semcom_main(["zoo", "add", str(b), "dj", "--zoo-dir", str(zoo), "--replace"]) == 0
    cont = _card(zoo, "dj")
    stage1, stage2 = cont["command"].split(" && ")
    assert stage1 == first["command"] and f"--init {a}" in stage2 and "--init dj" not in stage2
    assert cont["continued_from"]["zoo_name"] == "dj"
    assert cont["continued_from"]["sha256"] == first["sha256"] != cont["sha256"]
    assert cont["hours"] == pytest.approx(first["hours"] + cont["stage_hours"], abs=1e-4)
    assert cont["hardware"] == first["hardware"] == cont["stage_hardware"]  # the same machine
    # ADJSCC warm-started from the run folder (not the name): matched by the file's SHA-256
    _train(c, "--model", "adjscc", "--snr-train=-5:20", "--epochs", "1", "--init", str(b))
    assert sha256_file(b / "model.safetensors") == cont["sha256"]
    assert semcom_main(["zoo", "add", str(c), "adj", "--zoo-dir", str(zoo)]) == 0
    adj = _card(zoo, "adj")
    assert adj["warm_start_from"]["zoo_name"] == "dj" and "continued_from" not in adj
    assert adj["command"].count(" && ") == 2 and adj["command"].endswith(str(c))
    assert adj["hours"] == pytest.approx(cont["hours"] + adj["stage_hours"], abs=1e-4)


def test_lineage_survives_quoted_paths_and_another_working_directory(
    data_root, tmp_path, zoo, monkeypatch, capsys
):
    """Run folders with a space: the chained command stays one a shell can parse (it held an
    unclosed quote); a relative --init is recorded absolute, so 'zoo add' from elsewhere still
    finds the lineage (it was dropped silently), and an init it cannot find is said."""
    import shlex
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    _train("my runs/a", "--model", "deepjscc", "--epochs", "1")
    assert semcom_main(["zoo", "add", "my runs/a", "dj", "--zoo-dir", str(zoo)]) == 0
    _train("my runs/b", "--model", "deepjscc", "--epochs", "1", "--seed", "3", "--init", "dj")
    assert semcom_main(["zoo", "add", "my runs/b", "dj2", "--zoo-dir", str(zoo)]) == 0
    stage1, stage2 = (shlex.split(c) for c in _card(zoo, "dj2")["command"].split(" && "))
    assert stage1[stage1.index("--out") + 1] == "my runs/a"
    assert stage2[stage2.index("--init") + 1] == "my runs/a"  # the chain replays into it
    _train("my runs/c", "--model", "adjscc", "--snr-train=-5:20", "--epochs", "1",
           "--init", "my runs/b")  # fmt: skip
    _train("my runs/d", "--model", "adjscc", "--snr-train=-5:20", "--epochs", "1",
           "--init", "my runs/b")  # fmt: skip
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert semcom_main(["zoo", "add", "../my runs/c", "adj", "--zoo-dir", str(zoo)]) == 0
    assert _card(zoo, "adj")["warm_start_from"]["zoo_name"] == "dj2"
    shutil.rmtree(tmp_path / "my runs" / "b")
    capsys.readouterr()
    assert semcom_main(["zoo", "add", "../my runs/d", "adj2", "--zoo-dir", str(zoo)]) == 0
    err = capsys.readouterr().err
    assert f"--init '{tmp_path / 'my runs' / 'b'}', neither a zoo entry nor a file" in err
    assert "warm_start_from" not in _card(zoo, "adj2")


def test_chain_hardware_names_each_device_once():
    from semcom.zoo import chain_hardware

    cpu1 = "1 x CPU x86_64 (2 cores, 1 threads/process), torch 2.13.0+cpu"
    cpu2 = "1 x CPU x86_64 (2 cores, 2 threads/process), torch 2.13.0+cpu"
    gpu = "1 x NVIDIA H200, torch 2.11.0+cu130"
    assert chain_hardware(cpu1, cpu2) == cpu1  # another thread count: the same device
    both = chain_hardware(cpu1, gpu)
    assert both == f"{cpu1}, then {gpu}"
    assert chain_hardware(both, gpu) == both  # a second GPU stage
    assert chain_hardware(both, cpu2) == f"{both}, then {cpu2}"  # back on the CPU


def test_init_entry_replaced_since_is_not_claimed_as_lineage(data_root, tmp_path, zoo):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _train(a, "--model", "deepjscc", "--epochs", "1")
    assert semcom_main(["zoo", "add", str(a), "dj", "--zoo-dir", str(zoo)]) == 0
    _train(b, "--model", "deepjscc", "--epochs", "1", "--init", "dj")
    _train(c, "--model", "deepjscc", "--epochs", "1", "--seed", "5")
    assert semcom_main(["zoo", "add", str(c), "dj", "--zoo-dir", str(zoo), "--replace"]) == 0
    assert semcom_main(["zoo", "add", str(b), "dj2", "--zoo-dir", str(zoo)]) == 0
    card = _card(zoo, "dj2")
    assert "continued_from" not in card and " && " not in card["command"]
    assert card["init"]["ref"] == "dj" and len(card["init"]["fingerprint"]) == 12


def test_add_rejects_bad_runs_and_names(tmp_path, zoo, capsys):
    assert semcom_main(["zoo", "add", str(tmp_path / "nope"), "x", "--zoo-dir", str(zoo)]) == 2
    assert "card.json" in capsys.readouterr().err
    run = tmp_path / "r"
    run.mkdir()
    (run / "card.json").write_text(json.dumps({"task": "eval"}))
    assert semcom_main(["zoo", "add", str(run), "x", "--zoo-dir", str(zoo)]) == 2
    assert "'eval' run" in capsys.readouterr().err
    (run / "card.json").write_text(json.dumps({"a": 1}))  # some other program's card
    assert semcom_main(["zoo", "add", str(run), "x", "--zoo-dir", str(zoo)]) == 2
    assert "not a semcom run folder (its card names no task)" in capsys.readouterr().err
    (run / "card.json").write_text("{not json")
    assert semcom_main(["zoo", "add", str(run), "x", "--zoo-dir", str(zoo)]) == 2
    assert "corrupt run card" in capsys.readouterr().err
    (run / "card.json").write_text(json.dumps({"task": "denoiser"}))
    assert semcom_main(["zoo", "add", str(run), "x", "--test-data", "kodak"]) == 2
    assert "validation metrics" in capsys.readouterr().err


def test_latent_model_card_test_comes_from_validation():
    from semcom.diffusion.checkpoint import validation_test

    rc = {"data": {"val": "bsds500-val"},
          "val_metrics": {"gain_db@10dB": 1.5, "gain_db@-10dB": 2.5, "gain_db": 2.0}}  # fmt: skip
    t = validation_test(rc)
    assert t["snr_db"] == [-10.0, 10.0] and t["gain_db"] == [2.5, 1.5]
    assert t["data"].startswith("bsds500-val")
    t = validation_test({"val_metrics": {"rmse_db@-5dB": 0.8, "rmse_db@20dB": 1.3}})
    assert t["snr_db"] == [-5.0, 20.0] and t["rmse_db"] == [0.8, 1.3]
    assert validation_test({"val_metrics": {"loss": 1.0}}) == {}


def test_latent_model_test_names_the_epoch_it_was_validated_after(tmp_path):
    """A latent model's ``test`` (its run's last validation) names the epoch and step it was
    measured after, from the run card or its history (older cards), and ``zoo list`` says so
    when that is not the epoch of the weights (``--val-every``)."""
    from semcom.diffusion.checkpoint import validation_test
    from semcom.zoo import ZooEntry

    vm = {"gain_db@10dB": 1.5, "gain_db": 1.5}
    rc = {"epoch": 3, "val_metrics": vm, "val_epoch": 2, "val_step": 8,
          "history": [{"epoch": 2, "step": 8, "metrics": vm}]}  # fmt: skip
    t = validation_test(rc)
    assert (t["val_epoch"], t["val_step"]) == (2, 8)
    older = {k: v for k, v in rc.items() if k not in ("val_epoch", "val_step")}
    assert validation_test(older) == t

    def summary(test: dict, epochs: int) -> str:
        entry = ZooEntry(name="d", model="denoiser", cbr=1 / 16, channel="any", snr_train="0:20",
                         data="samples", test=test, command="", hours=0.0, hardware="",
                         weights=tmp_path / "d.safetensors", card={"epochs": epochs})  # fmt: skip
        return entry.summary()

    assert summary(t, 3).endswith("dB (validated after epoch 2, the weights are epoch 3's)")
    assert summary(t, 2) == "latent gain +1.50 dB @ 10 dB"


def test_val_when_is_the_last_validation_and_an_estimator_summary_names_its_epoch(tmp_path):
    """val_when reads the card's own fields first, else the last history entry (its step only
    when it has one); an SNR estimator's summary names the epoch it was validated after as a
    denoiser's does."""
    from semcom.zoo import ZooEntry, val_when

    h = [{"epoch": 1, "step": 4, "metrics": {}}, {"epoch": 3, "step": 12, "metrics": {}}]
    assert val_when({"history": h}) == {"val_epoch": 3, "val_step": 12}
    assert val_when({"history": [{"epoch": 2, "metrics": {}}]}) == {"val_epoch": 2}
    assert val_when({"val_epoch": 5, "val_step": 20, "history": h}) == {"val_epoch": 5,
                                                                        "val_step": 20}  # fmt: skip
    assert val_when({"history": []}) == {} and val_when({}) == {}
    test = {"snr_db": [-5.0, 20.0], "rmse_db": [0.8, 1.3], "val_epoch": 2, "val_step": 8}
    entry = ZooEntry(name="e", model="snr_estimator", cbr=1 / 16, channel="any",
                     snr_train="-5:20", data="samples", test=test, command="", hours=0.0,
                     hardware="", weights=tmp_path / "e.pt", card={"epochs": 3})  # fmt: skip
    assert entry.summary() == (
        "SNR RMSE 1.08 dB over -5..20 dB (validated after epoch 2, the weights are epoch 3's)"
    )


def test_zoo_card_without_a_field_is_named(zoo):
    """A hand-edited zoo card that lost a field (or whose ``data`` names no training set) is a
    ValueError naming the card, not an entry with ``data=None``; a valid one lists."""
    from semcom.zoo import list_checkpoints

    data = {"train": "cifar10-train", "test": "cifar10-test"}
    card = {"name": "x", "model": "deepjscc", "cbr": 1 / 12, "channel": "awgn",
            "snr_train": "10", "data": data}  # fmt: skip
    (zoo / "x.safetensors").write_bytes(b"")  # an entry: its weights are beside the card
    (zoo / "x.json").write_text(json.dumps(card))
    assert [e.data for e in list_checkpoints(zoo)] == ["cifar10-train"]
    for data in ({"test": "cifar10-test"}, ""):
        (zoo / "x.json").write_text(json.dumps({**card, "data": data}))
        with pytest.raises(ValueError, match=r"x\.json.*lacks a field.*no training set"):
            list_checkpoints(zoo)
    (zoo / "x.json").write_text(json.dumps({k: v for k, v in card.items() if k != "model"}))
    with pytest.raises(ValueError, match=r"lacks a field.*'model'"):
        list_checkpoints(zoo)
    (zoo / "x.json").write_text("{")
    with pytest.raises(ValueError, match="corrupt zoo card"):
        list_checkpoints(zoo)


def test_other_json_files_in_a_zoo_folder_are_not_cards(zoo):
    """A results file or a config saved in a user zoo folder (no weights beside it, no card
    format) is not an entry: every lookup failed on it as a "corrupt zoo card". A file that
    says it is a card, or has weights beside it, is still checked."""
    from semcom.zoo import CARD_FORMAT, list_checkpoints

    before = [e.name for e in list_checkpoints(zoo)]
    results = Path(__file__).resolve().parents[1] / "results" / "kodak-awgn.json"
    (zoo / "kodak-awgn.json").write_text(results.read_text())
    (zoo / "notes.json").write_text("{")
    (zoo / "list.json").write_text("[1, 2]")
    assert [e.name for e in list_checkpoints(zoo)] == before
    (zoo / "y.json").write_text(json.dumps({"format": CARD_FORMAT, "name": "y"}))
    with pytest.raises(ValueError, match=r"y\.json.*lacks a field"):
        list_checkpoints(zoo)
    (zoo / "y.json").unlink()
    (zoo / "notes.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"corrupt zoo card .*notes\.json"):
        list_checkpoints(zoo)


def test_user_zoo_from_the_environment(data_root, tmp_path, monkeypatch, capsys):
    """``$SEMCOM_ZOO``: ``zoo add`` writes there instead of the package folder, its entries are
    listed (marked) and found by name, a shipped default stays the default of its CBR, and a
    name in two zoo folders is refused rather than picked by order."""
    import shutil

    from semcom import zoo as zoo_mod

    mine, other = tmp_path / "my-zoo", tmp_path / "other-zoo"
    monkeypatch.setenv("SEMCOM_ZOO", f"{mine}{os.pathsep}{other}")
    run = tmp_path / "a"
    _train(run, "--model", "deepjscc", "--epochs", "1")
    shipped = zoo_mod.find_checkpoint("deepjscc", 1 / 12)
    assert not shipped.user and shipped.cbr == pytest.approx(1 / 12, rel=1e-3)
    assert semcom_main(["zoo", "add", str(run), "aaa-mine"]) == 0  # sorts before the shipped
    assert (mine / "aaa-mine.json").is_file() and (mine / "aaa-mine.safetensors").is_file()
    assert not (zoo_mod.ZOO_DIR / "aaa-mine.json").exists()
    capsys.readouterr()
    assert semcom_main(["zoo", "list"]) == 0
    listing = capsys.readouterr().out
    assert "aaa-mine * +" in listing and f"+ yours: in {mine} ($SEMCOM_ZOO)" in listing
    assert zoo_mod.find_checkpoint("deepjscc", 1 / 12).name == shipped.name  # still default
    assert zoo_mod.resolve_weights("aaa-mine") == str(mine / "aaa-mine.safetensors")
    assert zoo_mod.load_codec("deepjscc", "1/12", ref="aaa-mine").width == W
    # continuing a shipped entry: the user entry chains after it (lineage across folders)
    _train(tmp_path / "b", "--model", "deepjscc", "--epochs", "1", "--width", "64",
           "--init", shipped.name)  # fmt: skip
    assert semcom_main(["zoo", "add", str(tmp_path / "b"), "mine-cont"]) == 0
    assert _card(mine, "mine-cont")["continued_from"]["zoo_name"] == shipped.name
    # a shipped name cannot be taken by a user entry (which would --codec NAME load?)
    assert semcom_main(["zoo", "add", str(run), shipped.name]) == 2
    assert "give the new entry another name" in capsys.readouterr().err
    # a zoo folder that is a file: said as such, nothing written
    (tmp_path / "a-file").write_text("keep")
    monkeypatch.setenv("SEMCOM_ZOO", str(tmp_path / "a-file"))
    assert semcom_main(["zoo", "add", str(run), "in-a-file"]) == 2
    err = capsys.readouterr().err
    assert f"zoo folder {str(tmp_path / 'a-file')!r} is a file" in err
    assert (tmp_path / "a-file").read_text() == "keep"
    monkeypatch.setenv("SEMCOM_ZOO", f"{mine}{os.pathsep}{other}")
    other.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(mine / f"aaa-mine{suffix}", other / f"aaa-mine{suffix}")
    with pytest.raises(ValueError, match=r"'aaa-mine' is in .*my-zoo.* and .*other-zoo"):
        zoo_mod.list_checkpoints()


# --------------------------------------------------------------- card summaries, lineage
def test_zoo_summaries_show_the_middle_snr_and_the_rms_estimation_error(zoo):
    """A codec's test result is its PSNR at the middle test SNR (the training SNR of a range
    -5:20 is its middle, 7.5 dB); an SNR estimator's is the root mean square of its per-SNR
    RMSEs: 1 and 7 dB give sqrt((1 + 49) / 2) = 5 dB (their mean would be 4)."""
    from semcom.zoo import format_table, list_checkpoints

    base = {"cbr": 1 / 12, "channel": "awgn", "snr_train": "-5:20",
            "data": {"train": "cifar10-train"}}  # fmt: skip
    cards = [
        {**base, "name": "codec", "model": "adjscc",
         "test": {"data": "kodak", "snr_db": [-5.0, 7.5, 20.0], "psnr": [21.0, 26.5, 30.0]}},
        {**base, "name": "est", "model": "snr-estimator",
         "test": {"snr_db": [-10.0, 20.0], "rmse_db": [1.0, 7.0]}},
    ]  # fmt: skip
    for card in cards:
        (zoo / f"{card['name']}.json").write_text(json.dumps(card))
    codec, est = sorted(list_checkpoints(zoo), key=lambda e: e.name)
    assert codec.test_psnr == 26.5
    assert codec.summary() == "26.50 dB @ 7.5 dB (kodak)"
    assert est.test_psnr is None
    assert est.summary() == "SNR RMSE 5.00 dB over -10..20 dB"
    table = format_table([codec, est])
    assert "26.50 dB @ 7.5 dB (kodak)" in table and "SNR RMSE 5.00 dB" in table


def test_zoo_summary_says_how_many_images_a_partial_test_used(zoo):
    """``zoo add --test-limit``: the summary names the image count when the test did not use
    the whole set (recorded as ``n_total``; cards without it: the known set sizes)."""
    from semcom.zoo import list_checkpoints

    base = {"cbr": 1 / 16, "channel": "awgn", "snr_train": "10", "model": "deepjscc",
            "data": {"train": "kodak"}}  # fmt: skip
    test = {"data": "kodak", "snr_db": [10.0], "psnr": [14.6]}
    cards = {
        "one": {**test, "n_images": 1},  # written before n_total was recorded
        "two": {**test, "n_images": 2, "n_total": 24},
        "whole": {**test, "n_images": 24, "n_total": 24},
        "odd": {**test, "data": "my-set", "n_images": 3},  # whole set unknown: not said
    }
    for name, t in cards.items():
        (zoo / f"{name}.json").write_text(json.dumps({**base, "name": name, "test": t}))
    got = {e.name: e.summary() for e in list_checkpoints(zoo)}
    assert got == {
        "one": "14.60 dB @ 10 dB (kodak, 1 image)",
        "two": "14.60 dB @ 10 dB (kodak, 2 images)",
        "whole": "14.60 dB @ 10 dB (kodak)",
        "odd": "14.60 dB @ 10 dB (my-set)",
    }


def _fake_jscc_run(run, seed: int, hours: float, **card) -> str:
    """A finished ``train jscc`` run folder (a width-8 DeepJSCC, weights drawn from ``seed``)
    without training it; returns the codec's fingerprint."""
    import torch

    from semcom.codecs.jscc import build_jscc, jscc_metadata
    from semcom.fingerprint import codec_fingerprint
    from semcom.paths import safetensors_bytes

    torch.manual_seed(seed)
    codec = build_jscc("deepjscc", 8, W)
    state = {k: v.contiguous() for k, v in codec.state_dict().items()}
    run.mkdir()
    (run / "model.safetensors").write_bytes(safetensors_bytes(state, jscc_metadata(codec)))
    rc = {"task": "jscc", "model": "deepjscc", "model_config": {"model": "deepjscc", "c": 8,
          "width": W}, "cbr": 1 / 12, "channel": {"name": "awgn", "csi": "perfect"},
          "snr_train": "10", "data": {"train": "cifar10-train"}, "config": {},
          "train": {"epochs": 1}, "epoch": 1, "step": 4, "hours": hours,
          "hardware": "1 x CPU x86_64, torch 2", "command": f"semcom train jscc --out {run}",
          **card}  # fmt: skip
    (run / "card.json").write_text(json.dumps(rc))
    return codec_fingerprint(codec)


def test_lineage_hours_are_summed_over_every_stage(tmp_path, zoo, monkeypatch):
    """A chain of three runs (1.5 h, then 0.25 h continued from it, then 0.5 h continued from
    that): each zoo card's ``hours`` is the whole lineage's, 1.5, 1.75 and 2.25 h, and
    ``stage_hours`` its own stage's."""
    from semcom.zoo import export_to_zoo

    monkeypatch.delenv("SEMCOM_ZOO", raising=False)
    fp = _fake_jscc_run(tmp_path / "a", 0, 1.5)
    export_to_zoo(tmp_path / "a", "s1", zoo_dir=zoo)
    fp = _fake_jscc_run(tmp_path / "b", 1, 0.25, init="s1", init_fingerprint=fp)
    export_to_zoo(tmp_path / "b", "s2", zoo_dir=zoo)
    _fake_jscc_run(tmp_path / "c", 2, 0.5, init="s2", init_fingerprint=fp)
    export_to_zoo(tmp_path / "c", "s3", zoo_dir=zoo)
    s1, s2, s3 = (_card(zoo, n) for n in ("s1", "s2", "s3"))
    assert s1["hours"] == 1.5 and "stage_hours" not in s1
    assert (s2["hours"], s2["stage_hours"], s2["continued_from"]["hours"]) == (1.75, 0.25, 1.5)
    assert (s3["hours"], s3["stage_hours"], s3["continued_from"]["hours"]) == (2.25, 0.5, 1.75)
    assert s3["command"].count(" && ") == 2


def test_export_from_python_names_a_test_folder_by_its_path(tmp_path, zoo, monkeypatch):
    """``export_to_zoo(run, name, test_data=...)`` names the test data as ``--test-data``
    does: a folder of images (given relative, or as a ``Path``) by its absolute path, a named
    set in lower case. From Python the card said ``photos`` (a folder of whichever working
    directory), and a ``Path`` raised ``AttributeError``."""
    from PIL import Image

    from semcom.zoo import export_to_zoo

    monkeypatch.delenv("SEMCOM_ZOO", raising=False)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (16, 16), (90, 120, 30)).save(photos / "a.png")
    _fake_jscc_run(tmp_path / "a", 0, 0.1)
    monkeypatch.chdir(tmp_path)
    for name, data in (("t1", "photos"), ("t2", photos)):
        export_to_zoo(tmp_path / "a", name, test_data=data, test_snrs=[10.0], zoo_dir=zoo)
        test = _card(zoo, name)["test"]
        assert test["data"] == str(photos.resolve()) and test["n_images"] == 1
    export_to_zoo(tmp_path / "a", "t3", test_data="SAMPLES", test_limit=1, test_snrs=[10.0],
                  zoo_dir=zoo)  # fmt: skip
    assert _card(zoo, "t3")["test"]["data"] == "samples"


def test_latent_model_lineage_hours_add_up(tmp_path):
    """A latent model (an SNR estimator calibrated after its crop-trained stage) started from a
    run folder: hours 2.5 + 0.75 = 3.25, the stage's own 0.75 kept as ``stage_hours``; the
    first stage's validation metrics are named with the epoch they are of."""
    from semcom.diffusion.checkpoint import _add_latent_lineage
    from semcom.zoo import sha256_file

    first = tmp_path / "crops"
    first.mkdir()
    (first / "model.safetensors").write_bytes(b"weights of the first stage")
    vm = {"rmse_db": 1.0}  # of epoch 1 (at step 3), the card's history says
    (first / "card.json").write_text(json.dumps({"command": "semcom train a", "hours": 2.5,
        "val_metrics": vm, "history": [{"epoch": 1, "step": 3, "metrics": vm}]}))  # fmt: skip
    card = {"command": "semcom train b", "hours": 0.75}
    rc = {"init": str(first), "init_sha256": sha256_file(first)}
    _add_latent_lineage(card, rc)
    assert (card["hours"], card["stage_hours"]) == (3.25, 0.75)
    assert card["continued_from"]["hours"] == 2.5
    assert card["continued_from"]["val_metrics"] == vm
    assert (card["continued_from"]["val_epoch"], card["continued_from"]["val_step"]) == (1, 3)
    assert card["command"] == "semcom train a && semcom train b"


def test_refused_add_leaves_no_new_zoo_folder(tmp_path, capsys):
    """The lock file went into the zoo folder before the run was checked: a refused add to a
    fresh --zoo-dir (a run of another task, an unfinished one, a denoiser with --test-data)
    left that folder (and its missing parents) behind, empty; a folder that was there stays."""
    run = tmp_path / "r"
    run.mkdir()
    zoo = tmp_path / "new" / "zoo"
    for card, extra in (({"task": "eval"}, []), ({"task": "denoiser"}, ["--test-data", "kodak"])):
        (run / "card.json").write_text(json.dumps(card))
        assert semcom_main(["zoo", "add", str(run), "x", "--zoo-dir", str(zoo), *extra]) == 2
        assert "error" in capsys.readouterr().err
        assert not (tmp_path / "new").exists()
    zoo.mkdir(parents=True)
    assert semcom_main(["zoo", "add", str(run), "x", "--zoo-dir", str(zoo), "--test-data",
                        "kodak"]) == 2  # fmt: skip
    assert zoo.is_dir() and not any(zoo.iterdir())
