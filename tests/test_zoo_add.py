"""``semcom zoo add``: exporting runs into the zoo without losing anything, with their lineage."""

from __future__ import annotations

import json
import os

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
    monkeypatch.setattr("semcom.zoo.ZOO_DIR", z)  # --init NAME resolves in this zoo
    return z


def test_add_tests_lists_and_never_overwrites_silently(data_root, tmp_path, zoo, capsys):
    run = tmp_path / "a"
    _train(run, "--model", "deepjscc", "--epochs", "1")
    add = ["zoo", "add", str(run), "dj-tiny", "--zoo-dir", str(zoo)]
    assert semcom_main([*add, "--test-data", "cifar10-test", "--test-limit", "4",
                        "--test-snr", "0", "10"]) == 0  # fmt: skip
    assert "dB @ 10 dB (cifar10-test)" in capsys.readouterr().out
    card = _card(zoo, "dj-tiny")
    assert card["test"]["snr_db"] == [0.0, 10.0] and card["test"]["n_images"] == 4
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


def test_zoo_card_without_a_field_is_named(zoo):
    """A hand-edited zoo card that lost a field (or whose ``data`` names no training set) is a
    ValueError naming the card, not an entry with ``data=None``; a valid one lists."""
    from semcom.zoo import list_checkpoints

    data = {"train": "cifar10-train", "test": "cifar10-test"}
    card = {"name": "x", "model": "deepjscc", "cbr": 1 / 12, "channel": "awgn",
            "snr_train": "10", "data": data}  # fmt: skip
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
