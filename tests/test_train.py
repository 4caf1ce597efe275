"""The training engine (seeding, exact resume, checkpoints, DDP) and the JSCC task/CLI."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from semcom.train.engine import CHECKPOINT_FILES, TrainConfig, Trainer
from semcom.train.jscc import JSCCConfig, JSCCTask, parse_snr_train
from semcom.train.loading import ResumableSampler

W = 8


def _task(**kw) -> JSCCTask:
    base = dict(model="adjscc", cbr="1/12", width=W, data="cifar10-train", limit=16,
                val_data="0.001", val_limit=8, snr_train="-5:20", channel="rayleigh-fast",
                crop=24)  # fmt: skip
    base.update(kw)
    return JSCCTask(JSCCConfig(**base))


def _cfg(out, **kw) -> TrainConfig:
    base = dict(out=str(out), epochs=2, batch_size=4, lr=3e-3, progress=False,
                val_batch_size=8, seed=1)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def test_parse_snr_train():
    assert parse_snr_train("10") == (10.0, 10.0)
    assert parse_snr_train("-5:20") == (-5.0, 20.0)
    for bad in ("abc", "20:-5", "inf"):
        with pytest.raises(ValueError):
            parse_snr_train(bad)


def test_training_snr_is_uniform_in_db_over_the_range():
    """``--snr-train=-5:20`` draws each image's SNR uniform in dB over [-5, 20] (mean 7.5,
    variance 25^2 / 12, flat histogram); a single value is used as is."""
    n = 40_000
    snr = _task().sample_snr(n, torch.Generator().manual_seed(3), "cpu")
    assert snr.shape == (n,) and snr.min() >= -5 and snr.max() <= 20
    assert abs(snr.mean().item() - 7.5) < 0.15
    assert abs(snr.var().item() / (25**2 / 12) - 1) < 0.03
    counts = torch.histc(snr.float(), bins=5, min=-5, max=20)
    assert (counts - n / 5).abs().max() < 0.04 * n / 5
    fixed = _task(snr_train="10").sample_snr(5, torch.Generator().manual_seed(3), "cpu")
    assert fixed.tolist() == [10.0] * 5


def test_reconstruction_losses_known_values_and_weighting():
    from semcom.train.jscc import reconstruction_loss

    x = torch.full((2, 3, 4, 4), 0.5)
    x_hat = x.clone()
    x_hat[0] += 0.1  # MSE 1e-2 -> 20 dB
    x_hat[1] += 0.01  # MSE 1e-4 -> 40 dB
    mse, log = reconstruction_loss(x_hat, x, "mse")
    assert mse.item() == pytest.approx((1e-2 + 1e-4) / 2, rel=1e-5)
    assert float(log["psnr"]) == pytest.approx(30.0, abs=1e-3)  # mean per-image PSNR
    neg_psnr, log = reconstruction_loss(x_hat, x, "psnr")
    assert neg_psnr.item() == pytest.approx(-30.0, abs=1e-3)
    assert float(log["loss"]) == neg_psnr.item()
    # the logs stay on the device (0-dim tensors, no gradient): no wait for it per value
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in log.values())
    assert not any(v.requires_grad for v in log.values())
    # psnr weighs each image by 1/MSE_i: the 40 dB image gets a 100x larger push per unit
    # error than the 20 dB one, where the MSE lets the worst image dominate
    for kind, ratio in (("mse", 0.1), ("psnr", 10.0)):
        xh = x_hat.clone().requires_grad_(True)
        reconstruction_loss(xh, x, kind)[0].backward()
        g = xh.grad.flatten(1).norm(dim=1)
        assert (g[1] / g[0]).item() == pytest.approx(ratio, rel=1e-3)
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        JSCCConfig(loss="l1")


def test_sampler_shards_and_resumes():
    full = ResumableSampler(10, seed=3)
    full.set_epoch(2)
    order = list(full)
    assert sorted(order) == list(range(10))
    full.set_epoch(2, start=4)
    assert list(full) == order[4:]
    r0, r1 = ResumableSampler(10, 2, 0, seed=3), ResumableSampler(10, 2, 1, seed=3)
    assert len(r0) == len(r1) == 5 and set(r0) | set(r1) == set(range(10))
    full.set_epoch(3)
    assert list(full) != order


def test_training_reduces_loss(data_root, tmp_path):
    task = _task(model="deepjscc", channel="awgn", snr_train="10", crop=None, width=16)
    batch = torch.stack([task.train_dataset()[i] for i in range(8)])

    def loss_of(model):
        with torch.no_grad():
            return task.loss(model, batch, torch.Generator().manual_seed(0))[0].item()

    torch.manual_seed(1)
    before = loss_of(task.build_model())
    tr = Trainer(task, _cfg(tmp_path / "r", epochs=30, batch_size=8))
    metrics = tr.fit()
    after = loss_of(tr.model)
    assert after < 0.7 * before
    assert math.isfinite(metrics["psnr"])


def test_resume_is_exact(data_root, tmp_path, capsys):
    """A run stopped after epoch 1 (or mid-epoch) and resumed equals an uninterrupted run."""
    task = _task()
    Trainer(task, _cfg(tmp_path / "full")).fit()
    ref = _weights(tmp_path / "full")

    Trainer(task, _cfg(tmp_path / "a")).fit(stop_at_step=4)  # 4 steps = epoch 1
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert card["epoch"] == 1 and card["step"] == 4 and len(card["history"]) == 1
    Trainer(_task(), _cfg(tmp_path / "a")).fit(resume=tmp_path / "a")  # a fresh process

    Trainer(task, _cfg(tmp_path / "b", ckpt_every=3, command="start")).fit(stop_at_step=6)
    assert json.loads((tmp_path / "b" / "card.json").read_text())["batch_in_epoch"] == 2
    Trainer(task, _cfg(tmp_path / "b", ckpt_every=3, command="go on")).fit(resume=tmp_path / "b")
    # the card keeps the command that started the run and lists the resumes
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    assert card["command"] == "start" and card["resumed_with"] == ["go on"]

    for run in ("a", "b"):
        got = _weights(tmp_path / run)
        assert got.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], atol=1e-6, rtol=0)
    # the other files of a checkpoint
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    for key in ("config", "train", "seed", "git_commit", "hours", "hardware", "history",
                "model_config", "cbr", "data"):  # fmt: skip
        assert key in card
    assert len(card["history"]) == 2 and "psnr@7.5dB" in card["val_metrics"]
    state = torch.load(tmp_path / "a" / "state.pt", weights_only=True)
    assert state["step"] == 8 and "optimizer" in state and "rng" in state
    # resuming a finished run trains nothing, says so, and leaves the checkpoint as it was
    capsys.readouterr()
    Trainer(_task(), _cfg(tmp_path / "a")).fit(resume=tmp_path / "a")
    assert "nothing to train" in capsys.readouterr().err
    # a run stopped by --max-steps mid-epoch says so (it ended silently, bar at 3/4)
    assert Trainer(task, _cfg(tmp_path / "c", max_steps=3)).fit() == {}
    err = capsys.readouterr().err
    assert "stopped at step 3 (--max-steps 3) in epoch 1 of 2, not validated" in err
    Trainer(_task(), _cfg(tmp_path / "c", max_steps=3)).fit(resume=tmp_path / "c")
    err = capsys.readouterr().err
    assert "has finished 0 of 2 epochs, at step 3 of --max-steps 3" in err
    assert json.loads((tmp_path / "a" / "card.json").read_text()) == card
    for k, v in _weights(tmp_path / "a").items():
        torch.testing.assert_close(v, ref[k], atol=1e-6, rtol=0)


@pytest.mark.parametrize("renamed", [("model.safetensors",), ("model.safetensors", "state.pt")])
def test_a_checkpoint_write_cut_between_its_renames_is_finished_on_resume(
    data_root, tmp_path, renamed
):
    """SIGKILL between the renames of a checkpoint leaves the new weights next to the old state
    (and card), with the new files complete as temporary files: resume finishes the write and
    continues exactly (it refused before: "from different checkpoints", for good)."""
    import shutil

    task = _task(val_data="none")
    Trainer(task, _cfg(tmp_path / "full", ckpt_every=1)).fit()
    Trainer(task, _cfg(tmp_path / "new", ckpt_every=1)).fit(stop_at_step=3)
    run = tmp_path / "torn"
    Trainer(task, _cfg(run, ckpt_every=1)).fit(stop_at_step=2)
    for name in ("model.safetensors", "state.pt", "card.json"):  # step 3, cut mid-commit
        dest = run / name if name in renamed else run / f".{name}.0123456789ab.tmp"
        shutil.copy(tmp_path / "new" / name, dest)
    (run / ".model.safetensors.ffffffffffff.tmp").write_bytes(b"cut mid-write")  # never used
    Trainer(_task(val_data="none"), _cfg(run, ckpt_every=1)).fit(resume=run)
    left = sorted(p.name for p in run.iterdir())
    assert left == ["card.json", "model.safetensors", "state.pt"]  # its lock file too went
    ref, got = _weights(tmp_path / "full"), _weights(run)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-6, rtol=0)
    assert json.loads((run / "card.json").read_text())["step"] == 8


def test_same_run_same_bytes(data_root, tmp_path):
    """Two runs of one command and seed write byte-identical weights files (safetensors wrote
    its metadata in hash order, so equal weights had different SHA-256s in the cards)."""
    task = _task(val_data="none")
    for run in ("a", "b"):
        Trainer(task, _cfg(tmp_path / run, epochs=1)).fit()
    a, b = ((tmp_path / r / "model.safetensors").read_bytes() for r in ("a", "b"))
    assert a == b
    assert _weights(tmp_path / "a").keys() == _weights(tmp_path / "b").keys()


def test_plain_cuda_device_gets_an_index(data_root, tmp_path, monkeypatch):
    """``--device cuda`` (no index) trains on the first GPU: torch.cuda.set_device refuses a
    device without an index, so the trainer fills it in (checked without a GPU)."""
    got = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: got.append(d))
    tr = Trainer(_task(val_data="none"), _cfg(tmp_path / "r", device="cuda"))
    assert got == [torch.device("cuda", 0)] and tr.device == torch.device("cuda", 0)
    Trainer(_task(val_data="none"), _cfg(tmp_path / "r", device="cuda:1"))
    assert got[-1] == torch.device("cuda", 1)


def test_batches_come_pinned_for_a_gpu_only(data_root, tmp_path, monkeypatch):
    """The training and validation loaders pin their batches (page-locked memory, so that the
    ``non_blocking`` copy to the GPU overlaps) when the trainer runs on CUDA, and not on the CPU
    (checked without a GPU: the loader's setting)."""
    task = _task(val_data="none")
    ds = task.train_dataset()
    cpu = Trainer(task, _cfg(tmp_path / "a"))
    assert cpu._loader(ds, batch_size=2).pin_memory is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    gpu = Trainer(task, _cfg(tmp_path / "b", device="cuda", num_workers=1))
    loader = gpu._loader(ds, batch_size=2, shuffle=False)
    assert loader.pin_memory is True and loader.num_workers == 1
    assert loader.collate_fn == task.collate


def test_a_run_is_never_trained_over(data_root, tmp_path):
    """A new run into a folder that holds one is refused before any work (its checkpoint and
    card stay as they were); ``--resume`` of that folder continues it."""
    run = tmp_path / "r"
    task = _task(val_data="none")
    Trainer(task, _cfg(run, epochs=1)).fit()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for other_resume in (None, tmp_path / "elsewhere"):
        with pytest.raises(ValueError, match=r"already holds a run .*--resume"):
            Trainer(task, _cfg(run, epochs=2)).fit(resume=other_resume)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    Trainer(task, _cfg(run, epochs=2)).fit(resume=run)
    assert json.loads((run / "card.json").read_text())["epoch"] == 2


def test_a_run_into_a_folder_of_other_files_keeps_them_and_says_so(data_root, tmp_path, capsys):
    """The user's files in --out stay byte for byte beside the run's checkpoint files, and a
    note counts them; a folder holding only the run is not remarked on when resumed."""
    run = tmp_path / "r"
    run.mkdir()
    (run / "notes.txt").write_text("mine\n")
    task = _task(val_data="none")
    Trainer(task, _cfg(run, epochs=1)).fit()
    assert "also holds 1 other file(s) (kept)" in capsys.readouterr().err
    assert (run / "notes.txt").read_text() == "mine\n"
    assert all((run / n).is_file() for n in CHECKPOINT_FILES)
    Trainer(task, _cfg(run, epochs=2)).fit(resume=run)
    assert "other file" not in capsys.readouterr().err


def test_resume_does_not_need_the_init_checkpoint(data_root, tmp_path):
    """A run started with --init resumes after its --init checkpoint moved away (the checkpoint
    holds every weight) to the uninterrupted run's weights, and its card keeps the lineage."""
    Trainer(_task(val_data="none"), _cfg(tmp_path / "init", epochs=1)).fit()
    task = _task(val_data="none", init=str(tmp_path / "init"))
    Trainer(task, _cfg(tmp_path / "full")).fit()
    Trainer(task, _cfg(tmp_path / "r")).fit(stop_at_step=3)
    (tmp_path / "init").rename(tmp_path / "moved")
    Trainer(_task(val_data="none", init=str(tmp_path / "init")), _cfg(tmp_path / "r")).fit(
        resume=tmp_path / "r"
    )
    ref, got = _weights(tmp_path / "full"), _weights(tmp_path / "r")
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], atol=1e-6, rtol=0)
    full = json.loads((tmp_path / "full" / "card.json").read_text())
    card = json.loads((tmp_path / "r" / "card.json").read_text())
    assert card["init"] == full["init"] and card["init_fingerprint"] == full["init_fingerprint"]
    with pytest.raises(ValueError, match="neither a zoo name"):  # a new run still needs it
        Trainer(_task(val_data="none", init=str(tmp_path / "init")), _cfg(tmp_path / "n")).fit()


def test_two_processes_never_train_into_one_folder(data_root, tmp_path):
    """While a run trains, a second process starting a run (or resuming it) in the same folder
    is refused at once (both ran and overwrote each other's checkpoints); the lock goes with
    the process, so the folder is resumable afterwards."""
    import subprocess
    import textwrap

    run = tmp_path / "r"
    holder = textwrap.dedent(f"""
        import pathlib, time
        from semcom.locking import OutputLock
        p = pathlib.Path({str(run)!r}); p.mkdir()
        OutputLock(p / ".lock", "x").acquire()
        print("locked", flush=True); time.sleep(60)
    """)  # a training process holding the folder (as Trainer._lock_out does)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        task = _task(val_data="none")
        for resume in (None, run):
            refusal = f"the run folder '{run}' is being written by another semcom process "
            refusal += f"(pid {proc.pid}) right now"
            with pytest.raises(ValueError, match=re.escape(refusal)):
                Trainer(task, _cfg(run, epochs=1)).fit(resume=resume)
    finally:
        proc.kill()
        proc.wait()
    Trainer(task, _cfg(run, epochs=1)).fit()  # the holder is gone: the folder is free
    assert json.loads((run / "card.json").read_text())["epoch"] == 1


def test_resume_wrong_architecture_or_corrupt(data_root, tmp_path):
    run = tmp_path / "r"
    task = _task(val_data="none")
    Trainer(task, _cfg(run, epochs=1)).fit()
    with pytest.raises(ValueError, match=r"checkpoint c='8' but this run has c='6'"):
        Trainer(_task(cbr="1/16", val_data="none"), _cfg(run, epochs=2)).fit(resume=run)
    (run / "state.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        Trainer(task, _cfg(run, epochs=2)).fit(resume=run)


def test_a_crop_no_training_image_holds_is_refused_and_padding_is_said(tmp_path, capsys):
    """``train jscc --crop`` counts image pixels; a crop larger than every image would train on
    padding (refused), one larger than some pads those (a warning that counts them)."""
    import warnings

    from semcom.data import ImageFolder
    from semcom.train.cli import main
    from semcom.train.jscc import check_image_crop

    for i, (h, w) in enumerate([(40, 60), (20, 30), (50, 50)]):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(tmp_path / f"{i}.png")
    ds = ImageFolder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_image_crop(ds, 20, "mine")  # every image holds it: silent
    with pytest.warns(UserWarning, match=r"^1 of 3 images of mine are smaller than --crop 40: "):
        check_image_crop(ds, 40, "mine")
    with pytest.warns(UserWarning, match=r"^2 of 3 images of mine .* padded \(reflect\) to 45x45"):
        check_image_crop(ds, 45, "mine")
    with pytest.warns(UserWarning, match=r"^1 of 2 sampled images"):  # the first and the last
        check_image_crop(ds, 45, "mine", sample=2)
    with pytest.raises(ValueError, match=r"largest square crop one holds is 50, of a 50x50 image"):
        check_image_crop(ds, 51, "mine")
    # the command: one line, exit 2, and the same --out takes the corrected run
    out = tmp_path / "run"
    argv = ["train", "jscc", "--data", "samples", "--val-data", "none", "--out", str(out)]
    assert main([*argv, "--crop", "600"]) == 2
    assert "--crop 600 is larger than every image of samples" in capsys.readouterr().err
    assert main([*argv, "--crop", "16", "--max-steps", "1", "--batch-size", "2", "--quiet"]) == 0
    assert (out / "model.safetensors").exists()


def test_card_options_write_a_negative_value_with_an_equals_sign():
    """A card's negative number is one word ``--seed=-1`` (argparse would read a separate
    ``-1`` as an option); a positive one, and a list, follow the flag as words."""
    from semcom.cli import build_parser
    from semcom.train.cli import _task_parser, card_options

    card = {"train": {"seed": -1, "val_snr": [-5.0, 10.0], "epochs": 2}}
    words = card_options(card, _task_parser(build_parser(), "jscc"))
    assert "--seed=-1" in words and "-1" not in words
    assert words[words.index("--val-snr") + 1 :][:2] == ["-5.0", "10.0"]
    assert words[words.index("--epochs") + 1] == "2"


def test_a_negative_snr_range_needs_no_equals_sign():
    """``--snr-train -5:20`` failed with argparse's bare "expected one argument"."""
    from semcom.cli import build_parser
    from semcom.train.cli import join_range_values, parse_args

    argv = ["train", "jscc", "--snr-train", "-5:20", "--out", "r"]
    assert join_range_values(argv) == ["train", "jscc", "--snr-train=-5:20", "--out", "r"]
    assert parse_args(build_parser(), argv).snr_train == "-5:20"
    lat = ["train", "denoiser", "--snr-range", "-20:40", "--seed", "-1"]
    assert join_range_values(lat)[2:] == ["--snr-range=-20:40", "--seed", "-1"]
    assert join_range_values(["--snr-train", "10", "--x"]) == ["--snr-train", "10", "--x"]


def test_validation_images_that_cannot_be_batched_are_refused_before_training(tmp_path, capsys):
    """Whole validation images of different sizes (no --val-crop) failed in the first
    validation, after a whole epoch, which was lost; now refused before any training."""
    from semcom.train.cli import main

    out = tmp_path / "run"
    argv = ["train", "jscc", "--data", "samples", "--batch-size", "1", "--width", "8"]
    argv += ["--out", str(out)]  # whole images (no --crop): --val-crop defaults to none
    assert main([*argv, "--val-data", "samples"]) == 2
    err = capsys.readouterr().err
    assert "validation images of samples differ in size (300x451, 303x384, 400x600, ...)" in err
    assert "give --val-crop N" in err
    assert main([*argv, "--val-data", "0.5"]) == 2  # a held-out part of a mixed set
    assert "validation images of samples (held out) differ" in capsys.readouterr().err
    quick = ["--max-steps", "1", "--quiet"]
    assert main([*argv, "--val-data", "samples", "--val-limit", "1", *quick]) == 0  # one size


@pytest.mark.parametrize(
    ("argv", "msg"),
    [
        (["--val-limit", "0"], "--val-limit must be >= 1, got 0"),  # recorded "psnr 0" before
        (["--width", "0"], "--width must be >= 1, got 0"),  # silently became 64
        (["--crop", "0"], "--crop must be >= 1"),
        (["--val-snr", "nan"], "--val-snr must be finite"),  # failed after a whole epoch
        (["--warmup", "-5"], "warmup steps must be >= 0"),
        (["--ckpt-every", "-1"], "ckpt every must be >= 0"),  # checkpointed every step
        (["--max-steps", "0"], "max steps must be >= 1"),  # exit 0, nothing written
        (["--lr", "inf"], "lr must be a positive number"),  # diverged with a traceback
        (["--threads", "-2"], "threads must be >= 0"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),  # named neither flag nor value
        (["--val-every", "0"], "--val-every must be >= 1, got 0"),
        (["--schedule", "constant", "--warmup", "10"], "--warmup warms up the cosine schedule"),
    ],
)
def test_train_refuses_bad_options_before_any_work(tmp_path, capsys, argv, msg):
    from semcom.train.cli import main

    out = tmp_path / "r"
    base = ["train", "jscc", "--data", "samples", "--crop", "32", "--val-data", "none"]
    assert main([*base, *argv, "--out", str(out)]) == 2
    assert msg in capsys.readouterr().err
    assert not out.exists()


def test_diverged_training_is_one_message_and_keeps_the_checkpoint(
    data_root, tmp_path, capsys, monkeypatch
):
    """A NaN loss stops the run with one line naming the step and what to do (was a
    FloatingPointError traceback); the last checkpoint stays resumable."""
    from semcom.cli import main

    out = tmp_path / "r"
    args = ["train", "jscc", "--data", "samples", "--crop", "32", "--val-data", "none",
            "--width", str(W), "--batch-size", "2", "--epochs", "2", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main([*args, "--max-steps", "3"]) == 0
    real = JSCCTask.loss

    def nan_loss(self, model, batch, generator):
        loss, logs = real(self, model, batch, generator)
        return loss * float("nan"), logs

    monkeypatch.setattr(JSCCTask, "loss", nan_loss)
    assert main(["train", "jscc", "--resume", str(out), "--max-steps", "6", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "training diverged: the loss is nan at step 3" in err and "Traceback" not in err
    assert json.loads((out / "card.json").read_text())["step"] == 3


@pytest.mark.parametrize("name", ["meta", "mps", "xpu", "cuda:99"])
def test_parse_device_refuses_devices_this_machine_lacks(name):
    """Every command checks ``--device`` up front: a device type torch knows but this machine
    lacks (or ``meta``, which computes nothing) is one ValueError, not a traceback mid-run."""
    from semcom.devices import parse_device

    has = {
        "mps": torch.backends.mps.is_available(),
        "xpu": hasattr(torch, "xpu") and torch.xpu.is_available(),
        "cuda:99": torch.cuda.device_count() > 99,
    }
    if has.get(name):
        pytest.skip(f"this machine has {name}")
    with pytest.raises(ValueError, match="device"):
        parse_device(name)
    assert parse_device("cpu") == torch.device("cpu")


def test_cli_errors_and_run(data_root, tmp_path, capsys):
    from semcom.cli import main as semcom_main
    from semcom.codecs.jscc import load_jscc
    from semcom.train.cli import main

    assert main(["train", "jscc", "--cbr", "1/10", "--out", str(tmp_path / "x")]) == 2
    assert "nearest valid CBRs" in capsys.readouterr().err
    # a misspelt or absent device: one clear line, exit 2
    assert main(["train", "jscc", "--device", "cdua", "--out", str(tmp_path / "x")]) == 2
    assert "invalid --device 'cdua'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "jscc", "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
        assert "no CUDA device is available" in capsys.readouterr().err
    out = tmp_path / "cli"
    args = ["train", "jscc", "--model", "deepjscc", "--cbr", "1/6", "--width", str(W),
            "--limit", "8", "--val-data", "cifar10-test", "--val-limit", "4", "--epochs", "1",
            "--batch-size", "4", "--loss", "psnr", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    codec = load_jscc(out, model="deepjscc", c=16)
    assert codec.width == W
    card = json.loads((out / "card.json").read_text())
    assert card["command"].startswith("semcom train jscc") and card["config"]["loss"] == "psnr"
    assert card["config"]["repeats"] == 1 and card["step"] == 2  # 8 images, batches of 4
    # --cache-images: the same items, hence the same weights, bit for bit
    cached = tmp_path / "cached"
    assert main([*args[:-3], "--cache-images", "--out", str(cached), "--quiet"]) == 0
    a, b = load_file(out / "model.safetensors"), load_file(cached / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((cached / "card.json").read_text())["config"]["cache_images"] is True
    # resuming with a different CBR is refused, naming the option
    bad = [*args[:5], "1/12", *args[6:], "--resume", str(out)]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "cbr" in err
    # a changed seed is named once (it is in both the task's and the trainer's options)
    assert main([*args[:-3], "--seed", "9", "--resume", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err.count("seed: checkpoint 0, now 9") == 1
    assert "--resume reads the run's options from its card" in err
    # the run's own command plus --resume resumes it ...
    assert main([*shlex.split(card["command"])[1:], "--resume", str(out), "--epochs", "1"]) == 0
    # ... and so does --resume alone: the options come from the card (cbr 1/6, width W, loss
    # psnr, 8 images, not the defaults), options given now override the ones that may change
    # (--cache-images, which does not change the result, may be switched on)
    assert (
        main(["train", "jscc", "--resume", str(out), "--epochs", "2", "--cache-images", "--quiet"])
        == 0
    )
    card = json.loads((out / "card.json").read_text())
    assert card["epoch"] == 2 and card["train"]["epochs"] == 2
    assert card["config"]["loss"] == "psnr" and card["config"]["width"] == W
    assert card["command"].startswith("semcom train jscc --model deepjscc")  # the start
    assert card["resumed_with"][-1] == (
        f"semcom train jscc --resume {out} --epochs 2 --cache-images --quiet"
    )
    # a moved run folder resumes where it is now (the card's --out is not reused); the same
    # through the `semcom` entry point
    moved = tmp_path / "moved"
    out.rename(moved)
    assert semcom_main(["train", "jscc", "--resume", str(moved), "--epochs", "3", "--quiet"]) == 0
    assert json.loads((moved / "card.json").read_text())["epoch"] == 3 and not out.exists()
    # --repeats 3: three crops of every image per epoch, three times the steps
    rep = tmp_path / "rep"
    assert main([*args[:-3], "--repeats", "3", "--out", str(rep), "--quiet"]) == 0
    card = json.loads((rep / "card.json").read_text())
    assert card["config"]["repeats"] == 3 and card["step"] == 6 and card["epoch"] == 1
    assert card["data"]["n_train"] == 8 and card["data"]["repeats"] == 3  # images, not crops
    assert main([*args[:-3], "--repeats", "0", "--out", str(tmp_path / "r0")]) == 2
    assert "--repeats must be >= 1" in capsys.readouterr().err
    # a run of another task is refused by name
    assert main(["train", "denoiser", "--resume", str(moved)]) == 2
    assert "is a 'train jscc' run, not 'denoiser'" in capsys.readouterr().err


def test_export_to_zoo_and_scheme(data_root, tmp_path, monkeypatch):
    import semcom.zoo as zoo
    from semcom.channels import Channel
    from semcom.schemes import get_scheme

    run = tmp_path / "run"
    Trainer(_task(model="deepjscc", channel="awgn", snr_train="10"), _cfg(run, epochs=1)).fit()
    zdir = tmp_path / "zoo"
    monkeypatch.setattr("semcom.zoo.catalog.ZOO_DIR", zdir)
    card = zoo.export_to_zoo(run, "deepjscc-test-1-12", test_data="cifar10-test", test_limit=8)
    assert card.is_file() and (zdir / "deepjscc-test-1-12.safetensors").is_file()
    (e,) = zoo.list_checkpoints()
    assert e.model == "deepjscc" and math.isclose(e.cbr, 1 / 12) and e.test_psnr is not None
    assert "deepjscc-test-1-12" in zoo.format_table([e])
    scheme = get_scheme("deepjscc", 1 / 12)
    x = torch.rand(2, 3, 32, 32)
    tx = scheme.transmit(x, Channel("awgn"), 10.0, torch.Generator().manual_seed(0))
    assert tx.images.shape == x.shape and math.isclose(tx.cbr.cbr, 1 / 12)
    with pytest.raises(ValueError, match="shipped CBRs: 1/12"):
        get_scheme("deepjscc", 1 / 6)
    with pytest.raises(ValueError, match="no adjscc checkpoints shipped yet"):
        get_scheme("adjscc", 1 / 12)
    # a repeated test SNR is measured once (its PSNR was summed twice)
    twice = zoo.export_to_zoo(run, "t2", test_data="cifar10-test", test_limit=8, test_snrs=[10, 10])
    once = zoo.export_to_zoo(run, "t1", test_data="cifar10-test", test_limit=8, test_snrs=[10])
    t2, t1 = (json.loads(p.read_text())["test"] for p in (twice, once))
    assert t2["snr_db"] == [10] and t2["psnr"] == t1["psnr"] and 10 < t1["psnr"][0] < 40
    # card and weights of different checkpoints (a run writing one now) are refused and the
    # entry is left as it was
    entry = (zdir / "t1.safetensors").read_bytes(), once.read_text()
    rc = json.loads((run / "card.json").read_text())
    (run / "card.json").write_text(json.dumps({**rc, "step": rc["step"] - 1}))
    with pytest.raises(ValueError, match=r"card.json \(step 3\) and model.safetensors \(step 4\)"):
        zoo.export_to_zoo(run, "t1", replace=True)
    assert ((zdir / "t1.safetensors").read_bytes(), once.read_text()) == entry


@pytest.mark.slow
def test_ddp_two_processes(data_root, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "semcom.train.cli", "train", "jscc", "--model", "adjscc", "--cbr", "1/16",
           "--width", str(W), "--limit", "16", "--val-limit", "4", "--val-data", "0.001",
           "--snr-train=0:10", "--epochs", "1", "--batch-size", "4", "--out", str(out),
           "--quiet"]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    finals = [line for line in r.stdout.splitlines() if line.startswith('{"out"')]
    assert len(finals) == 1 and "psnr" in json.loads(finals[0])  # rank 0's, with its metrics
    card = json.loads((out / "card.json").read_text())
    assert card["world_size"] == 2 and card["step"] == 2  # 16 images / (2 x 4) per step
    assert math.isfinite(card["val_metrics"]["psnr"])
    # the recorded command reruns the run: with its launcher and process count (the global
    # batch and the data order depend on it), and --resume reads the run's options back
    assert card["command"].startswith("torchrun --nproc_per_node=2 -m semcom.cli train jscc ")
    from semcom.cli import build_parser
    from semcom.devices import command_args
    from semcom.train.cli import resume_argv

    assert command_args(card["command"])[:2] == ["train", "jscc"]
    again = resume_argv(["train", "jscc", "--resume", str(out)], "jscc", str(out), build_parser())
    assert again[:4] == ["train", "jscc", "--model", "adjscc"] and again[-2:] == [
        "--resume",
        str(out),
    ]
    from semcom.codecs.jscc import load_jscc

    load_jscc(out, model="adjscc", c=6)
    assert not list(out.glob("*.tmp"))


def test_launch_command_and_its_inverse(monkeypatch):
    from semcom.devices import command_args, launch_command

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launch_command(["eval", "--out", "a b.json"]) == "semcom eval --out 'a b.json'"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    cmd = launch_command(["train", "jscc"])
    assert cmd == "torchrun --nnodes=2 --nproc_per_node=2 -m semcom.cli train jscc"
    assert command_args(cmd) == ["train", "jscc"]
    assert command_args("semcom eval --out 'a b.json'") == ["eval", "--out", "a b.json"]
    assert command_args("python -m semcom.train.cli train denoiser") == ["train", "denoiser"]
    assert command_args("ls -la") is None


def test_train_reports_its_end_and_leaves_nothing_after_a_refused_start(
    tmp_path, capsys, monkeypatch
):
    """A run with --quiet and no validation printed nothing at all; a start refused (unknown
    data) left an empty run folder holding only its lock; --out naming a file gave "[Errno 17]
    File exists"; Ctrl-C said only "interrupted"."""
    from semcom.train import engine
    from semcom.train.cli import main

    base = ["train", "jscc", "--data", "samples", "--crop", "32", "--batch-size", "2",
            "--val-data", "none", "--quiet"]  # fmt: skip
    out = tmp_path / "r"
    assert main([*base, "--max-steps", "1", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out) == {"out": str(out)}
    card = json.loads((out / "card.json").read_text())  # the data preparation, kept apart
    assert card["setup_hours"] > 0 and card["hours"] >= 0
    assert card["data"]["val"] == "none" and card["data"]["val_used"] == "none"
    auto = tmp_path / "auto"  # --val-data auto: what it resolved to, and how many images
    assert main([*base[:-3], "--quiet", "--max-steps", "1", "--out", str(auto)]) == 0
    used = json.loads((auto / "card.json").read_text())["data"]["val_used"]
    assert used == "0.02 of samples held out (1 image)"
    capsys.readouterr()
    assert main(["train", "jscc", "--data", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown data set 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    afile = tmp_path / "afile"
    afile.write_text("keep")
    assert main([*base, "--out", str(afile)]) == 2
    assert "is a file: give a run folder" in capsys.readouterr().err and afile.read_text() == "keep"

    def interrupted(self, resume=None, stop_at_step=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.Trainer, "fit", interrupted)
    assert main([*base, "--resume", str(out)]) == 130
    assert f"'semcom train jscc --resume {out}'" in capsys.readouterr().err


def test_git_commit_says_when_the_tree_is_dirty(monkeypatch):
    """A card's commit alone does not rebuild a run trained with uncommitted changes."""
    from types import SimpleNamespace

    from semcom.train import engine

    said = {"rev-parse": "abc123", "status": " M src/semcom/link.py"}
    monkeypatch.setattr(
        engine.subprocess,
        "run",
        lambda cmd, **kw: SimpleNamespace(returncode=0, stdout=said[cmd[1]]),
    )
    assert engine.git_commit() == "abc123-dirty"
    said["status"] = ""
    assert engine.git_commit() == "abc123"
    said["rev-parse"] = ""
    assert engine.git_commit() == "unknown"


def test_lr_schedules_known_values(tmp_path):
    """Linear warm-up then cosine to min_lr_ratio, and the step schedule, at known steps."""
    from semcom.train.engine import lr_lambda

    f = lr_lambda(_cfg(tmp_path, warmup_steps=4, min_lr_ratio=0.1), 14)
    for step, want in ((0, 0.25), (3, 1.0), (4, 1.0), (9, 0.55), (14, 0.1), (20, 0.1)):
        assert f(step) == pytest.approx(want, abs=1e-12), step
    f = lr_lambda(_cfg(tmp_path, schedule="step"), 9)  # x0.1 every 3 steps
    for step, want in ((2, 1.0), (3, 0.1), (6, 0.01)):
        assert f(step) == pytest.approx(want, abs=1e-12), step
    assert lr_lambda(_cfg(tmp_path, schedule="constant"), 9)(7) == 1.0


def test_each_epoch_draws_its_own_crops(data_root, tmp_path, monkeypatch):
    """The training set is told each epoch (its random crops and flips depend on it): 0 and
    1 in a two-epoch run, 1 when a finished first epoch is resumed."""
    import semcom.train.loading as loading

    told: list[int] = []
    real = loading._set_epoch
    monkeypatch.setattr(loading, "_set_epoch", lambda ds, e: (told.append(e), real(ds, e)))
    task = _task(val_data="none")
    Trainer(task, _cfg(tmp_path / "a", epochs=2)).fit()
    assert told == [0, 1]
    told.clear()
    Trainer(task, _cfg(tmp_path / "b", epochs=1)).fit()
    Trainer(task, _cfg(tmp_path / "b", epochs=2)).fit(resume=tmp_path / "b")
    assert told == [0, 1]


@pytest.mark.parametrize("n", [11, 12])
def test_sampler_pads_so_every_rank_takes_as_many(n):
    """DDP ranks must take equal shares (else the gradient all-reduce hangs): 11 items over 2
    ranks give 6 each, together covering every item."""
    shares = [list(ResumableSampler(n, 2, r, seed=0)) for r in range(2)]
    for s, r in zip(shares, range(2), strict=True):
        assert len(s) == len(ResumableSampler(n, 2, r, seed=0)) == math.ceil(n / 2)
    assert set(shares[0]) | set(shares[1]) == set(range(n))


# ----------------------------------------------------------- validation of the JSCC task
@pytest.mark.parametrize("val_data", ["0.5", "samples"])
@pytest.mark.filterwarnings("ignore:--val-data samples is the training data")
def test_validation_takes_centre_crops_without_flips(val_data: str) -> None:
    """Validation items are the centre ``crop x crop`` window of each image, unflipped, in every
    epoch (random windows would make the epochs' numbers incomparable): checked against the
    window cut from the whole image by hand, for a held-out part and for a named set."""
    from torch.utils.data import Subset

    task = _task(data="samples", val_data=val_data, crop=32, limit=None, val_limit=None)
    val = task.val_dataset()
    assert val is not None and len(val) >= 3
    for i in range(len(val)):
        base, j = val, i
        while isinstance(base, Subset):
            base, j = base.dataset, base.indices[j]
        whole = base.image(j)
        h, w = whole.shape[-2:]
        top, left = (h - 32) // 2, (w - 32) // 2
        want = whole[:, top : top + 32, left : left + 32]
        for epoch in (0, 3):
            base.set_epoch(epoch)
            assert torch.equal(val[i], want), (i, epoch)


def _ramps() -> torch.Tensor:
    """Two smooth 16 x 16 images (ramps), which a trained codec reconstructs well."""
    u = torch.linspace(0, 1, 16)
    a = torch.stack([u[:, None] * u[None, :], u[:, None].expand(16, 16), u[None, :].expand(16, 16)])
    return torch.stack([a, 1 - a])


def test_validation_headline_is_the_middle_snr_and_noise_is_seeded_per_batch() -> None:
    """``-5:20`` validates at -5, 7.5 and 20 dB and reports the 7.5 dB PSNR as ``psnr`` (the
    middle of the range, not an end). The channel noise of batch i is seeded by (seed, i): the
    numbers repeat whatever the global RNG holds, change with the seed, do not depend on which
    other SNRs are validated, and two copies of one batch get different draws."""
    from semcom.channels import Channel
    from semcom.codecs.jscc import load_jscc
    from semcom.train.jscc import default_val_snrs, evaluate_codec
    from semcom.zoo import resolve_weights

    codec = load_jscc(resolve_weights("deepjscc-c8-cifar10-awgn10"))
    x, ch = _ramps(), Channel("awgn")
    snrs = default_val_snrs(*parse_snr_train("-5:20"))
    assert snrs == [-5.0, 7.5, 20.0]
    torch.manual_seed(0)
    res = evaluate_codec(codec, [x, x], ch, snrs, seed=3)
    at = [res[f"psnr@{s:g}dB"] for s in snrs]
    assert at[0] + 3 < at[1] < at[2]  # more noise, lower PSNR: the three tell apart
    assert res["psnr"] == at[1]
    torch.manual_seed(1)  # another global RNG state: the same numbers
    assert evaluate_codec(codec, [x, x], ch, snrs, seed=3) == res
    alone = evaluate_codec(codec, [x, x], ch, [7.5], seed=3)
    assert alone == {"psnr": at[1], "psnr@7.5dB": at[1]}
    other = evaluate_codec(codec, [x, x], ch, snrs, seed=4)
    assert abs(other["psnr@-5dB"] - at[0]) > 0.05
    # the mean over two copies of one batch differs from that batch's: batch 1 drew other noise
    first = evaluate_codec(codec, [x], ch, snrs, seed=3)
    assert abs(first["psnr@-5dB"] - at[0]) > 0.1
    # the task validates at its own seed and its range's SNRs
    task = _task(model="deepjscc", cbr="1/12", channel="awgn", seed=3)
    assert task.validate(codec, [x, x]) == res
    # nothing to measure is an error, not a PSNR of 0 dB (or an IndexError)
    with pytest.raises(ValueError, match="snrs is empty"):
        evaluate_codec(codec, [x], ch, [], seed=3)
    with pytest.raises(ValueError, match="no images to validate on"):
        evaluate_codec(codec, [], ch, snrs, seed=3)


# ------------------------------------------------------------------- optimiser details
class _RowsTask:
    """A :class:`~semcom.train.engine.Task` fitting ``w . x`` (``w`` starts at (1, -2)) on rows
    ``x = (3, 4)``: each step's gradient is (3, 4), norm 5, whatever ``w`` (times ``scale``;
    0: no gradient at all). It records each step's generator seed."""

    name = "rows"

    def __init__(self, scale: float = 1.0, n: int = 4) -> None:
        self.config = {"scale": scale, "n": n}
        self.seeds: list[int] = []

    def build_model(self) -> torch.nn.Module:
        model = torch.nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            model.weight.copy_(torch.tensor([[1.0, -2.0]]))
        return model

    def train_dataset(self) -> list[torch.Tensor]:
        return [torch.tensor([3.0, 4.0])] * self.config["n"]

    def val_dataset(self) -> None:
        return None

    def collate(self, items: list) -> torch.Tensor:
        return torch.stack(items)

    def loss(self, model, batch, generator) -> tuple[torch.Tensor, dict[str, float]]:
        self.seeds.append(generator.initial_seed())
        loss = self.config["scale"] * model(batch).mean()
        return loss, {"loss": float(loss.detach())}

    def validate(self, model, loader) -> dict[str, float]:
        return {}

    def model_metadata(self, model) -> dict[str, str]:
        return {"task": self.name}

    def card(self) -> dict:
        return {}


def _one_step(out: Path, task: _RowsTask, **kw) -> tuple[torch.Tensor, dict]:
    """Train one step of ``task`` (constant LR ``lr``); its weights and optimiser state."""
    cfg = _cfg(out, epochs=1, batch_size=4, lr=0.1, schedule="constant", **kw)
    tr = Trainer(task, cfg)
    tr.fit()
    state = torch.load(out / "state.pt", weights_only=True)
    return tr.model.weight.detach()[0], state["optimizer"]


def test_a_resume_from_python_refuses_another_batch_size_or_lr(tmp_path) -> None:
    """``Trainer(task, cfg).fit(resume=RUN)`` with a ``TrainConfig`` whose batch size or LR
    differs from the checkpoint's is refused, naming both, before anything is written: the
    position in the epoch counts batches (another size trained items twice or skipped them),
    and the optimizer's state kept the old LR while the card recorded the new one. What may
    change (``epochs``, ``out``, ...) still does."""
    run = tmp_path / "r"  # 8 rows, batches of 4: stopped mid-epoch 1 after one step
    cfg = dict(epochs=2, batch_size=4, lr=0.1, schedule="constant")
    Trainer(_RowsTask(n=8), _cfg(run, max_steps=1, **cfg)).fit()
    card = (run / "card.json").read_bytes()
    for change, said in (
        ({"batch_size": 2}, "batch_size: checkpoint 4, now 2"),
        ({"lr": 0.5}, "lr: checkpoint 0.1, now 0.5"),
    ):
        with pytest.raises(ValueError, match=re.escape(said)):
            Trainer(_RowsTask(n=8), _cfg(run, **{**cfg, **change})).fit(resume=run)
        assert (run / "card.json").read_bytes() == card
    Trainer(_RowsTask(n=8), _cfg(tmp_path / "b", **{**cfg, "epochs": 3})).fit(resume=run)
    assert json.loads((tmp_path / "b" / "card.json").read_text())["step"] == 6


def test_a_run_folder_given_as_a_path(tmp_path) -> None:
    """``TrainConfig(out=Path(...))`` (and a ``Path`` in the task's config): the run trains,
    checkpoints and resumes, its card holding them as text (a ``Path`` failed at the first
    checkpoint, ``PosixPath is not JSON serializable``, after the epoch had trained, and left
    no run behind)."""
    run = tmp_path / "r"
    cfg = dict(out=run, epochs=1, batch_size=4, progress=False)
    task = _RowsTask(n=8)
    task.config["data"] = tmp_path / "photos"  # a task's option given as a Path too
    Trainer(task, TrainConfig(**cfg)).fit()
    card = json.loads((run / "card.json").read_text())
    assert card["train"]["out"] == str(run) and card["step"] == 2
    assert card["config"]["data"] == str(tmp_path / "photos")
    Trainer(_RowsTask(n=8), TrainConfig(**{**cfg, "epochs": 2})).fit(resume=run)
    assert json.loads((run / "card.json").read_text())["step"] == 4


def test_adamw_decays_the_weights_by_the_configured_weight_decay(tmp_path) -> None:
    """With no gradient, an AdamW step only decays: ``w <- (1 - lr * wd) w`` = 0.95 w for
    lr 0.1 and weight decay 0.5 (and leaves ``w`` as is without weight decay)."""
    w, opt = _one_step(tmp_path / "wd", _RowsTask(scale=0.0), weight_decay=0.5)
    assert opt["param_groups"][0]["weight_decay"] == 0.5
    torch.testing.assert_close(w, torch.tensor([0.95, -1.9]), rtol=1e-6, atol=0)
    w, _ = _one_step(tmp_path / "none", _RowsTask(scale=0.0))
    assert w.tolist() == [1.0, -2.0]


def test_train_optimiser_options_reach_the_run(tmp_path) -> None:
    """``semcom train ... --weight-decay 0.25``: AdamW runs with 0.25 (its state says so); the
    schedule's, clipping's and validation's options reach the run's config (its card)."""
    from semcom.train.cli import main

    out = tmp_path / "r"
    argv = ["train", "jscc", "--data", "samples", "--crop", "16", "--width", str(W),
            "--batch-size", "2", "--val-data", "none", "--max-steps", "1", "--quiet",
            "--weight-decay", "0.25", "--grad-clip", "1.5", "--val-batch-size", "4"]  # fmt: skip
    assert main([*argv, "--min-lr-ratio", "0.1", "--out", str(out)]) == 0
    state = torch.load(out / "state.pt", weights_only=True)
    assert [g["weight_decay"] for g in state["optimizer"]["param_groups"]] == [0.25]
    train = json.loads((out / "card.json").read_text())["train"]
    assert (train["min_lr_ratio"], train["grad_clip"], train["val_batch_size"]) == (0.1, 1.5, 4)
    step = ["--schedule", "step", "--step-size", "5", "--gamma", "0.5"]
    assert main([*argv, *step, "--out", str(tmp_path / "s")]) == 0
    train = json.loads((tmp_path / "s" / "card.json").read_text())["train"]
    assert (train["schedule"], train["step_size"], train["gamma"]) == ("step", 5, 0.5)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"grad_clip": -1.0}, "gradient clip must be >= 0"),
        ({"grad_clip": float("nan")}, "gradient clip must be >= 0"),
        ({"min_lr_ratio": 1.5}, "min LR ratio must be within"),
        ({"gamma": 0.0, "schedule": "step"}, "gamma must be within"),
        ({"min_lr_ratio": 0.1, "schedule": "step"}, "--min-lr-ratio sets the cosine schedule"),
        ({"step_size": 3}, "--step-size sets the step schedule"),
        ({"gamma": 0.5, "schedule": "constant"}, "--gamma sets the step schedule"),
    ],
)
def test_train_config_refuses_schedule_options_it_would_ignore(options, message) -> None:
    """Out-of-range values, and options of another schedule than the one chosen, are errors:
    an ignored ``--gamma`` would train silently with another schedule than intended."""
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(out="x", **options)


@pytest.mark.parametrize(
    ("clip", "grad"), [(2.0, [1.2, 1.6]), (0.0, [3.0, 4.0]), (10.0, [3.0, 4.0])]
)
def test_gradient_norm_is_clipped_to_grad_clip(tmp_path, clip: float, grad: list[float]) -> None:
    """The gradient (3, 4) (L2 norm 5) reaches AdamW scaled to norm ``grad_clip`` = 2, i.e.
    (1.2, 1.6); unclipped with ``grad_clip`` 0 (off) or above its norm. Read from AdamW's first
    moment after one step: ``(1 - beta1) g = 0.1 g``."""
    _, opt = _one_step(tmp_path / "r", _RowsTask(), grad_clip=clip)
    m = opt["state"][0]["exp_avg"][0]
    torch.testing.assert_close(m, 0.1 * torch.tensor(grad), rtol=1e-5, atol=0)


def test_step_generator_mixes_seed_rank_and_step() -> None:
    """Each (seed, rank, step) has its own stream: DDP ranks must not draw the same channel
    noise and SNRs (their gradients would repeat each other); the same triple, the same one."""
    from semcom.train.engine import step_generator

    def draw(seed: int, rank: int, step: int) -> list[float]:
        g = step_generator(seed, rank, step, torch.device("cpu"))
        return torch.rand(4, generator=g).tolist()

    assert draw(1, 0, 5) == draw(1, 0, 5)
    triples = [(1, 0, 5), (1, 1, 5), (1, 0, 6), (2, 0, 5), (1, 1, 4), (1, 5, 0), (1, 6, 0)]
    draws = [draw(*t) for t in triples]
    assert len({tuple(d) for d in draws}) == len(triples)


def test_each_rank_trains_on_its_own_step_generators(tmp_path, monkeypatch) -> None:
    """The trainer hands step s of rank r the generator ``step_generator(seed, r, s)``: rank 1
    draws other noise than rank 0 at every step. (One process playing rank 1, reading rank 0's
    share of the data: alone it cannot shard for two.)"""
    from semcom.train import engine
    from semcom.train.engine import step_generator

    monkeypatch.setattr(
        engine, "ResumableSampler", lambda n, world, rank, seed: ResumableSampler(n, 1, 0, seed)
    )
    seeds = {}
    for rank in (0, 1):
        task = _RowsTask(n=8)
        trainer = Trainer(task, _cfg(tmp_path / f"r{rank}", epochs=1, batch_size=2))
        trainer.rank = rank
        trainer.fit()
        seeds[rank] = task.seeds
        want = [step_generator(1, rank, s, torch.device("cpu")).initial_seed() for s in range(3)]
        assert seeds[rank][:3] == want
    assert all(a != b for a, b in zip(seeds[0], seeds[1], strict=True))


def test_trainer_refuses_a_rank_outside_the_world(tmp_path, monkeypatch) -> None:
    """A stray ``RANK`` without ``WORLD_SIZE`` is one process training alone (rank 0); a rank
    outside ``WORLD_SIZE`` is an error, not an epoch that never ends (its data share is empty)."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    trainer = Trainer(_RowsTask(n=8), _cfg(tmp_path / "alone", epochs=1, batch_size=2))
    assert (trainer.rank, trainer.world) == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="RANK=2 is outside WORLD_SIZE=2"):
        Trainer(_RowsTask(n=8), _cfg(tmp_path / "outside", epochs=1, batch_size=2))


_SMALL = ["--data", "samples", "--crop", "32", "--width", str(W), "--batch-size", "2",
          "--val-data", "none", "--quiet"]  # fmt: skip


def test_a_later_resume_keeps_the_options_of_earlier_resumes(data_root, tmp_path, capsys):
    """A plain ``--resume`` continues with the options the run's last checkpoint was trained
    with (its card's ``config`` / ``train``), not those of the command that started it: an
    earlier ``--resume --epochs 8`` or ``--max-steps 100`` is not dropped. The card's command
    stays the start and every resume is listed, so the chain replays the run."""
    from semcom.cli import main

    run = tmp_path / "k1"  # 6 images, batches of 2: 3 steps per epoch
    assert main(["train", "jscc", *_SMALL, "--epochs", "4", "--max-steps", "3",
                 "--out", str(run)]) == 0  # fmt: skip
    assert main(["train", "jscc", "--resume", str(run), "--epochs", "8", "--max-steps", "9"]) == 0
    assert main(["train", "jscc", "--resume", str(run), "--max-steps", "100"]) == 0
    card = json.loads((run / "card.json").read_text())
    assert (card["epoch"], card["step"]) == (8, 24)  # was epoch 4, step 12: --epochs 8 dropped
    assert card["train"]["epochs"] == 8 and card["train"]["max_steps"] == 100
    # how an invocation ran is not carried: the start's --quiet left the later bars on
    assert card["train"]["progress"] is True
    assert card["command"].startswith("semcom train jscc --data samples")
    assert card["resumed_with"] == [
        f"semcom train jscc --resume {run} --epochs 8 --max-steps 9",
        f"semcom train jscc --resume {run} --max-steps 100",
    ]
    capsys.readouterr()
    assert main(["train", "jscc", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "has finished 8 of 8 epochs, at step 24" in err and "--max-steps 3" not in err


def test_a_reached_max_steps_and_session_options_are_not_carried(data_root, tmp_path, capsys):
    """A --max-steps the run has reached was an earlier invocation's limit: a later resume with
    a larger --epochs trains on (it said "nothing to train ... of --max-steps 2"); --quiet,
    --device and the like describe one invocation and are not replayed (a run once resumed on
    a GPU would ask for CUDA on a CPU machine); a refused option is named by its real flag."""
    from semcom.cli import build_parser, main
    from semcom.train.cli import _task_parser, card_options, resume_argv

    run = tmp_path / "m1"  # 3 steps per epoch
    assert main(["train", "jscc", *_SMALL, "--epochs", "1", "--out", str(run)]) == 0
    assert main(["train", "jscc", "--resume", str(run), "--epochs", "2", "--max-steps", "4",
                 "--quiet"]) == 0  # fmt: skip
    assert json.loads((run / "card.json").read_text())["step"] == 4
    assert main(["train", "jscc", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    card = json.loads((run / "card.json").read_text())
    assert (card["epoch"], card["step"]) == (3, 9) and card["train"]["max_steps"] is None
    # a --max-steps not reached yet is carried (a crash before it: the same plan goes on)
    card = {**card, "step": 9, "train": {**card["train"], "max_steps": 12, "device": "cuda",
                                         "progress": False, "cache_images": True}}  # fmt: skip
    words = card_options(card, _task_parser(build_parser(), "jscc"))
    assert words[words.index("--max-steps") + 1] == "12"
    assert not {"--device", "--quiet", "--cache-images", "--threads"} & set(words)
    (run / "card.json").write_text(json.dumps(card))
    argv = ["train", "jscc", "--resume", str(run)]
    assert "--device" not in resume_argv(argv, "jscc", str(run), build_parser())
    capsys.readouterr()
    assert main([*argv, "--no-flip", "--val-snr", "5"]) == 2
    err = capsys.readouterr().err
    assert "--no-flip: checkpoint False, now True" in err and "--val-snr: checkpoint" in err
    assert "--flip:" not in err and "--val-snrs" not in err


def test_a_run_trained_from_python_resumes_from_the_command_line(data_root, tmp_path, capsys):
    """A run started with ``Trainer(...).fit()`` records no command (""): ``--resume`` takes
    its options from the card's task and trainer configs (was: "options differ: --cbr:
    checkpoint '1/16', now '1/6'; --width ...", CLI defaults nobody gave), and the card keeps
    saying it was started from Python."""
    from semcom.cli import main

    run = tmp_path / "py1"
    task = JSCCTask(JSCCConfig(cbr="1/16", width=W, data="samples", crop=32, val_data="none"))
    Trainer(task, TrainConfig(out=str(run), epochs=1, batch_size=2, progress=False)).fit()
    assert json.loads((run / "card.json").read_text())["command"] == ""
    assert main(["train", "jscc", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    card = json.loads((run / "card.json").read_text())
    assert card["epoch"] == 2 and card["config"]["cbr"] == "1/16" and card["config"]["width"] == W
    assert card["command"] == "" and card["resumed_with"] == [
        f"semcom train jscc --resume {run} --epochs 2 --quiet"
    ]


def test_init_without_width_takes_the_width_of_the_checkpoint(data_root, tmp_path, capsys):
    """``--init RUN`` without ``--width`` builds the codec at the checkpoint's width (was:
    "width is 8 in the file but 64 was requested", 64 being the default nobody gave)."""
    from semcom.cli import main

    first = tmp_path / "jfull"
    assert main(["train", "jscc", *_SMALL, "--epochs", "1", "--out", str(first)]) == 0
    small = _SMALL[:4] + _SMALL[6:]  # no --width
    out = tmp_path / "cont"
    assert main(["train", "jscc", *small, "--init", str(first), "--epochs", "1",
                 "--out", str(out)]) == 0, capsys.readouterr().err  # fmt: skip
    assert json.loads((out / "card.json").read_text())["config"]["width"] == W
    # a width given that the checkpoint does not have is still refused, naming both
    bad = [
        "train",
        "jscc",
        *small,
        "--init",
        str(first),
        "--width",
        "16",
        "--out",
        str(tmp_path / "x"),
    ]
    assert main(bad) == 2
    assert "width is 8 in the file but 16 was requested" in capsys.readouterr().err


def test_a_resume_with_nothing_to_train_names_the_run_folder(data_root, tmp_path, capsys):
    """``--resume RUN --out OTHER`` of a finished run trains nothing and writes nothing: the
    line printed names RUN, which holds the run (was OTHER, a folder that does not exist)."""
    from semcom.cli import main

    run, other = tmp_path / "j2", tmp_path / "j3"
    assert main(["train", "jscc", *_SMALL, "--epochs", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "jscc", "--resume", str(run), "--out", str(other)]) == 0
    out, err = capsys.readouterr()
    assert "nothing to train" in err and f"nothing is written to --out {str(other)!r}" in err
    assert json.loads(out.strip().splitlines()[-1]) == {"out": str(run)} and not other.exists()


def test_eval_notes_a_codec_run_that_has_not_finished(data_root, tmp_path, capsys):
    """``--codec RUN`` of a run stopped before the end of its schedule was used without a
    word: its numbers are an unfinished run's (a finished run gets no note)."""
    from semcom.cli import main

    run = tmp_path / "j"  # 3 steps per epoch
    assert main(["train", "jscc", *_SMALL, "--cbr", "1/16", "--epochs", "2", "--max-steps", "2",
                 "--out", str(run)]) == 0  # fmt: skip
    argv = ["eval", "--scheme", "deepjscc", "--cbr", "1/16", "--codec", str(run), "--dataset",
            "samples", "--crop", "32", "--limit", "1", "--snr", "10", "--metrics", "psnr",
            "--quiet"]  # fmt: skip
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "a.json")]) == 0
    err = capsys.readouterr().err
    assert (f"note: --codec {run}: a run that has not finished its schedule (epoch 0 of 2, "
            "stopped at step 2 by --max-steps 2)") in err  # fmt: skip
    assert main(["train", "jscc", "--resume", str(run)]) == 0  # to the end of --epochs
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "b.json")]) == 0
    assert "has not finished" not in capsys.readouterr().err


def test_a_checkpoint_that_cannot_be_written_says_which_one_is_kept(tmp_path, monkeypatch):
    """Disk full at the second checkpoint said only "[Errno 28] No space left on device": not
    which checkpoint, nor that the one before is intact and the run continues with --resume."""
    import errno

    from semcom import paths
    from semcom.train import engine

    writes = {"n": 0, "fail_at": 2}

    def full_disk(files):
        writes["n"] += 1
        if writes["n"] == writes["fail_at"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        paths.atomic_write_files(files)

    monkeypatch.setattr(engine, "atomic_write_files", full_disk)
    task = _task(model="deepjscc", cbr="1/16", data="samples", limit=None, val_data="none",
                 crop=32, channel="awgn", snr_train="10")  # fmt: skip
    run = tmp_path / "r"  # 6 images, 3 steps of 2 per epoch
    with pytest.raises(OSError, match=r"checkpoint of step 6 .*\(No space left on device\); "
                       r"its checkpoint of step 3 is kept: .* --resume") as e:  # fmt: skip
        Trainer(task, _cfg(run, batch_size=2)).fit()
    assert e.value.errno == errno.ENOSPC
    assert json.loads((run / "card.json").read_text())["step"] == 3
    assert not list(run.glob(".*.tmp"))
    writes.update(n=0, fail_at=1)  # a resume into the same folder keeps its checkpoint too
    with pytest.raises(OSError, match="its checkpoint of step 3 is kept"):
        Trainer(task, _cfg(run, batch_size=2)).fit(resume=run)
    with pytest.raises(OSError, match="no checkpoint was written yet"):
        writes.update(n=0, fail_at=1)
        Trainer(task, _cfg(tmp_path / "r2", batch_size=2)).fit()
    # a resume into another folder: the run it resumes is untouched
    writes.update(n=0, fail_at=1)
    with pytest.raises(OSError, match=r"the run it resumes, '.*/r', is unchanged"):
        Trainer(task, _cfg(tmp_path / "r3", batch_size=2, epochs=3)).fit(resume=run)
    # an error without an errno keeps none ("[Errno None]" was printed)
    monkeypatch.setattr(engine, "atomic_write_files", lambda f: (_ for _ in ()).throw(OSError()))
    with pytest.raises(OSError) as e:
        Trainer(task, _cfg(tmp_path / "r4", batch_size=2)).fit()
    assert e.value.errno is None and "Errno" not in str(e.value)


def test_train_tells_where_the_run_is_how_long_it_has_left_and_how_to_resume_it(
    tmp_path, capsys, monkeypatch
):
    """The progress said nothing of the run as a whole (where, how many steps, time left);
    under torchrun every rank printed the final line (rank 1's without the metrics, in either
    order) and the Ctrl-C hint, which named a plain 'semcom train --resume' that refuses a run
    of 2 processes; a Ctrl-C before the first checkpoint named a folder with nothing to resume;
    --val-data naming the training data validated on it silently."""
    from semcom.train import engine
    from semcom.train.cli import main

    base = ["train", "jscc", "--data", "samples", "--crop", "32", "--batch-size", "2",
            "--width", str(W), "--val-data", "0.34", "--val-limit", "2", "--epochs", "2",
            "--quiet"]  # fmt: skip
    run = tmp_path / "r"
    assert main([*base, "--out", str(run)]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert f"training jscc in {str(run)!r}: step 0 to 4 (2 epochs of 2 steps)" in err
    assert re.fullmatch(r"epoch 1/2 step 2: psnr .* \(~\d+ s left\)", lines[0]), lines
    assert "left" not in lines[1] and json.loads(lines[2])["out"] == str(run)

    with pytest.warns(UserWarning, match="--val-data samples is the training data"):
        _task(data="samples", val_data="samples", limit=None).val_dataset()
    from semcom.train.denoiser import DenoiserTask, DenoiserTaskConfig

    den = DenoiserTask(DenoiserTaskConfig(codec="deepjscc", cbr="1/16", data="samples",
                                          val_data="samples", crop=4, width=8))  # fmt: skip
    den.progress = False
    with pytest.warns(UserWarning, match="samples is the training data: .*\\(name another"):
        den.val_dataset()

    def interrupted(self, resume=None, stop_at_step=None):
        raise KeyboardInterrupt

    def finished(self, resume=None, stop_at_step=None):
        return {"psnr": 1.0} if self.is_main else {}

    monkeypatch.setattr(engine.Trainer, "fit", interrupted)
    new = tmp_path / "new"
    assert main([*base, "--out", str(new)]) == 130
    assert "before the first checkpoint: nothing to resume" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main([*base, "--resume", str(run), "--epochs", "3"]) == 130
    hint = f"'torchrun --nproc_per_node=2 -m semcom.cli train jscc --resume {run}'"
    assert hint in capsys.readouterr().err
    monkeypatch.setattr(engine.Trainer, "fit", finished)
    assert main([*base, "--resume", str(run), "--epochs", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"out": str(run), "psnr": 1.0}
    monkeypatch.setenv("RANK", "1")  # the other ranks print nothing
    assert main([*base, "--resume", str(run), "--epochs", "3"]) == 0
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(engine.Trainer, "fit", interrupted)
    assert main([*base, "--resume", str(run), "--epochs", "3"]) == 130
    assert capsys.readouterr() == ("", "")


def test_the_first_line_names_the_steps_this_invocation_trains(tmp_path, capsys):
    """``--max-steps`` ends the run sooner: the first line names that step (the time left
    counts to it), one epoch is "1 epoch", ``--ckpt-every`` is named; a resume with nothing
    left to train prints no such line."""
    task = _task(model="deepjscc", cbr="1/16", data="samples", limit=None, val_data="none",
                 crop=32, channel="awgn", snr_train="10")  # fmt: skip
    run = tmp_path / "r"  # 6 images, 3 steps of 2 per epoch
    cfg = _cfg(run, batch_size=2, epochs=1, max_steps=2, ckpt_every=1)
    Trainer(task, cfg).fit()
    err = capsys.readouterr().err
    assert (
        f"training jscc in {str(run)!r}: step 0 to 2 (1 epoch of 3 steps), a checkpoint after "
        "every epoch and every 1 steps\n"
    ) in err
    Trainer(task, cfg).fit(resume=run)
    assert "training jscc" not in capsys.readouterr().err


def test_durations_read_in_the_unit_that_suits_them():
    from semcom.train.engine import _duration

    secs = [45, 89.4, 90, 12 * 60, 5399, 5400, 3.4 * 3600]
    assert [_duration(s) for s in secs] == [
        "45 s", "89 s", "2 min", "12 min", "90 min", "1.5 h", "3.4 h"
    ]  # fmt: skip


def test_data_set_words_are_recorded_as_they_are_read(tmp_path, monkeypatch):
    """Every data-set option, as ``--opt value`` or ``--opt=value``, records a folder by its
    absolute path and a named set in lower case; ``--val-data``'s words (``none``, ``auto``,
    a fraction) stay words even beside a folder of that name; other options are untouched."""
    from semcom.train.cli import _val_data_arg, canonical_data_words

    for name in ("pics", "none", "auto", "0.02"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    pics = str((tmp_path / "pics").resolve())
    words = ["none", "auto", "0.02", "pics", "KODAK"]
    assert [_val_data_arg(w) for w in words] == ["none", "auto", "0.02", pics, "kodak"]
    argv = ["--dataset", "pics", "--in-data=pics", "--out-data", "KODAK", "--data=pics",
            "--val-data", "none", "--test-data", "pics", "--limit", "pics"]  # fmt: skip
    assert canonical_data_words(argv) == [
        "--dataset", pics, f"--in-data={pics}", "--out-data", "kodak", f"--data={pics}",
        "--val-data", "none", "--test-data", pics, "--limit", "pics",
    ]  # fmt: skip


def test_validating_on_the_training_data_is_named_by_data_set_not_by_spelling(tmp_path):
    """``KODAK`` is kodak (warned), two folders whose names differ in case are two data sets
    (the names were compared in lower case)."""
    import warnings

    from semcom.train.engine import warn_if_validating_on_training_data as warn

    (tmp_path / "Imgs").mkdir()
    (tmp_path / "imgs").mkdir()
    with pytest.warns(UserWarning, match="is the training data"):
        warn("kodak", "KODAK", hold_out=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn(str(tmp_path / "Imgs"), str(tmp_path / "imgs"), hold_out=False)


# ------------------------------------------------------------- loop efficiency details
class _EpochRows(torch.utils.data.Dataset):
    """Item ``i`` of epoch ``e`` is ``(100 e + i, pid)``: its value depends on the epoch (as
    a crop does) and it names the process that read it."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([100.0 * self.epoch + i, float(os.getpid())], dtype=torch.float64)


class _EpochRowsTask(_RowsTask):
    """Fits ``w x`` on the rows' values; records each step's values and reader pids; its
    logs are tensors; it validates (recording each call) when ``validates``."""

    name = "epoch-rows"

    def __init__(self, n: int = 8, validates: bool = False) -> None:
        super().__init__(n=n)
        self.validates = validates
        self.values: list[list[float]] = []
        self.pids: list[set[int]] = []
        self.validated = 0

    def build_model(self) -> torch.nn.Module:
        return torch.nn.Linear(1, 1, bias=False)

    def train_dataset(self) -> _EpochRows:
        return _EpochRows(self.config["n"])

    def val_dataset(self) -> list[torch.Tensor] | None:
        return [torch.zeros(2)] * 2 if self.validates else None

    def loss(self, model, batch, generator):
        self.values.append(batch[:, 0].tolist())
        self.pids.append({int(p) for p in batch[:, 1].tolist()})
        loss = model(batch[:, :1].float() / 100).pow(2).mean()
        return loss, {"loss": loss.detach(), "twice": 2 * loss.detach()}

    def validate(self, model, loader) -> dict[str, float]:
        self.validated += 1
        return {"w": float(model.weight.sum()), "n": float(self.validated)}


def test_dataloader_workers_persist_across_epochs_and_get_each_epochs_items(tmp_path):
    """With ``num_workers`` the same worker processes load every epoch (they were started again
    for each epoch: ~0.5 s per epoch for two loaders of 2 workers here), and they load epoch
    ``e``'s items (their copy of the data set learns the epoch with each index), so the batches
    and the weights are those of loading in the main process."""
    runs = {}
    for workers in (0, 2):
        task = _EpochRowsTask(n=8)
        tr = Trainer(task, _cfg(tmp_path / f"w{workers}", epochs=3, batch_size=2,
                                num_workers=workers))  # fmt: skip
        tr.fit()
        runs[workers] = (task, tr.model.weight.detach().clone())
    (main, w_main), (pooled, w_pooled) = runs[0], runs[2]
    assert pooled.values == main.values  # each epoch's own items, in the same order
    assert {v // 100 for step in main.values for v in step} == {0, 1, 2}
    assert torch.equal(w_pooled, w_main)
    pids = set().union(*pooled.pids)
    assert os.getpid() not in pids and len(pids) == 2  # 2 workers for all 3 epochs


def test_persistent_loader_passes_draw_from_the_global_rng_as_new_loaders_did():
    """Each pass over a loader takes one number from torch's global RNG (a new DataLoader
    iterator's worker seed), also when its persistent workers serve the pass: the global RNG
    (in ``state.pt``, and for a task's own randomness) runs as with workers started per pass,
    also when a pass is cut short."""
    from torch.utils.data import DataLoader

    from semcom.train.loading import _Loader

    def after(cls, **kw) -> torch.Tensor:
        torch.manual_seed(0)
        loader = cls(list(range(8)), batch_size=2, num_workers=2, **kw)
        for cut in (None, 1, None):
            for i, _ in enumerate(loader):
                if i == cut:
                    break
        if isinstance(loader, _Loader):
            loader.close()
        return torch.get_rng_state()

    assert torch.equal(after(_Loader, persistent_workers=True), after(DataLoader))


class _WorkerSeeds(torch.utils.data.Dataset):
    """Item ``i`` is ``(worker id, get_worker_info().seed)`` of the worker that reads it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        info = torch.utils.data.get_worker_info()
        return torch.tensor([info.id, info.seed])


def test_persistent_workers_report_the_worker_seed_of_workers_started_per_pass():
    """A data set seeding its own generator from ``get_worker_info().seed`` (as torch's docs
    suggest) sees, in each pass over persistent workers, the seed a worker started for the
    pass has (base seed + worker id), not the first pass's."""
    from torch.utils.data import DataLoader

    from semcom.train.loading import _Loader

    def seeds(cls, **kw) -> list[list[list[int]]]:
        torch.manual_seed(0)
        loader = cls(_WorkerSeeds(), batch_size=1, num_workers=2, **kw)
        out = [torch.cat(list(loader)).tolist() for _ in range(3)]
        if isinstance(loader, _Loader):
            loader.close()
        return out

    persistent = seeds(_Loader, persistent_workers=True)
    assert persistent == seeds(DataLoader)
    assert len({row[1] for p in persistent for row in p}) == 6  # 2 workers x 3 passes


def test_fit_stops_its_dataloader_workers_when_it_ends(tmp_path):
    """The persistent workers (training and validation loaders) are stopped when ``fit``
    returns, not left running while the trainer lives."""
    task = _EpochRowsTask(n=8, validates=True)
    tr = Trainer(task, _cfg(tmp_path / "run", epochs=2, batch_size=2, num_workers=2))
    tr.fit()
    import multiprocessing

    pids = set().union(*task.pids)
    assert len(pids) == 2 and os.getpid() not in pids
    assert not pids & {p.pid for p in multiprocessing.active_children()}  # none left running


def test_an_infinite_loss_is_a_diverged_run_too(tmp_path):
    """``+inf`` (not only NaN) stops the run as diverged, naming the step."""
    from semcom.train.engine import TrainingDiverged

    class _InfTask(_EpochRowsTask):
        def loss(self, model, batch, generator):
            loss, logs = super().loss(model, batch, generator)
            return loss + (math.inf if len(self.values) == 3 else 0.0), logs

    with pytest.raises(TrainingDiverged, match="the loss is inf at step 2"):
        Trainer(_InfTask(n=8), _cfg(tmp_path / "run", epochs=2, batch_size=2)).fit()


def test_host_values_reads_tensors_and_numbers_as_floats_and_passes_the_rest():
    """The loss and every log that is a tensor or a real number come back as Python floats
    (as ``float()`` gives them: a NumPy float32 too); other logs as they are. The bar shows a
    float to 4 significant digits, anything else with ``str``."""
    from semcom.train.engine import _host_values, _shown

    logs = {"b": torch.tensor([0.25], dtype=torch.float16), "n": 3, "f": np.float32(0.1),
            "a": torch.tensor(-1.5), "s": "warm", "x": None}  # fmt: skip
    value, shown = _host_values(torch.tensor(2.5, dtype=torch.float32), logs)
    assert value == 2.5 and type(value) is float
    assert shown == {"b": 0.25, "n": 3.0, "f": float(np.float32(0.1)), "a": -1.5, "s": "warm",
                     "x": None}  # fmt: skip
    assert all(type(shown[k]) is float for k in ("b", "n", "f", "a"))
    assert [_shown(shown[k]) for k in ("f", "n", "s")] == ["0.1", "3", "warm"]
    assert _shown(1 / 3) == "0.3333" and _shown(123456.0) == "1.235e+05"


class _RandomRows(_EpochRows):
    """Item ``i`` is ``(torch.rand, pid, random.random, np.random.rand)``: drawn from the global
    RNGs of the process that reads it (torchvision-style augmentation), not from its index."""

    def __getitem__(self, i: int) -> torch.Tensor:
        import random

        draws = [torch.rand(()).item(), float(os.getpid()), random.random(), np.random.rand()]  # noqa: NPY002
        return torch.tensor(draws, dtype=torch.float64)


class _RandomRowsTask(_EpochRowsTask):
    """:class:`_EpochRowsTask` on :class:`_RandomRows`, recording each step's rows (their three
    draws)."""

    def train_dataset(self) -> _RandomRows:
        return _RandomRows(self.config["n"])

    def loss(self, model, batch, generator):
        self.rows = [*getattr(self, "rows", []), batch[:, [0, 2, 3]].tolist()]
        return super().loss(model, batch, generator)


def test_persistent_workers_draw_the_items_of_workers_started_per_epoch(tmp_path, monkeypatch):
    """Items drawn from a worker's global RNGs (torch, random, numpy) are those of workers
    started for each epoch (seeded by the pass's base seed, as torch seeds new ones; what the
    trainer did before its workers persisted), so a run stopped at an epoch end and resumed
    (new workers) reads the items of the uninterrupted run."""
    from semcom.train import loading

    def rows(run: str, **fit) -> list:
        task = _RandomRowsTask(n=8, validates=True)
        cfg = _cfg(tmp_path / run, epochs=3, batch_size=2, num_workers=2)
        Trainer(task, cfg).fit(**fit)
        assert os.getpid() not in set().union(*task.pids)  # read in the workers
        return task.rows

    full = rows("full")
    cut = rows("cut", stop_at_step=4) + rows("cut", resume=tmp_path / "cut")
    with monkeypatch.context() as m:  # workers started for every pass (not persistent)

        def per_pass(self, ds, **kw):
            return loading._Loader(
                ds, num_workers=self.cfg.num_workers, collate_fn=self.task.collate, **kw
            )

        m.setattr(Trainer, "_loader", per_pass)
        started = rows("started")
    assert len(full) == 12 and full == started and cut == started
    draws = [v for step in full for row in step for v in row]
    assert len(set(draws)) == len(draws)  # every epoch's (and worker's) draws are new


def test_training_with_workers_and_its_resume_give_the_weights_of_the_main_process(
    data_root, tmp_path
):
    """JSCC with 2 persistent workers: the weights of loading in the main process, bit for bit,
    and a run stopped mid-epoch 2 and resumed (new workers) reaches them too."""
    task = _task(val_data="none")
    Trainer(task, _cfg(tmp_path / "main")).fit()
    Trainer(task, _cfg(tmp_path / "pool", num_workers=2)).fit()
    Trainer(task, _cfg(tmp_path / "cut", num_workers=2, ckpt_every=3)).fit(stop_at_step=6)
    Trainer(_task(val_data="none"), _cfg(tmp_path / "cut", num_workers=2, ckpt_every=3)).fit(
        resume=tmp_path / "cut"
    )
    ref = _weights(tmp_path / "main")
    for run in ("pool", "cut"):
        got = _weights(tmp_path / run)
        assert all(torch.equal(got[k], ref[k]) for k in ref), run


def test_a_step_waits_for_the_device_once_for_its_loss_and_logs(tmp_path, monkeypatch, capsys):
    """The trainer reads the loss (the check that it is finite) and the task's tensor logs (for
    the progress bar) in one transfer: one host sync per step, where ``isfinite`` and a
    ``float()`` per log each waited for the device. Counted on the CPU: every read of a
    tensor's value from the end of one ``task.loss`` to the start of the next (backward, the
    optimizer, the bar, the next batch), except AdamW's reads of its step count (a CPU tensor,
    also when training on a GPU: no wait for the device)."""
    reads = [0]
    for name in ("item", "tolist", "__bool__", "__float__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, **kw):
            caller = sys._getframe(1).f_code.co_filename
            reads[0] += Path(caller).parent.name != "optim"
            return _real(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counted)
    between: list[int] = []
    task = _EpochRowsTask(n=8)
    real_loss = task.loss

    def loss(model, batch, generator):
        between.append(reads[0])
        out = real_loss(model, batch, generator)
        reads[0] = 0  # the task's own bookkeeping above is not the trainer's
        return out

    monkeypatch.setattr(task, "loss", loss)
    Trainer(task, _cfg(tmp_path / "r", epochs=1, batch_size=2, progress=True)).fit()
    assert between[1:] == [1, 1, 1]  # 4 steps of one epoch
    assert "twice=" in capsys.readouterr().err  # the logs still reach the bar


@pytest.mark.parametrize("progress", [False, True])
def test_logs_that_are_not_numbers_reach_the_bar_as_text(tmp_path, capsys, progress):
    """A task's log that is not a number (a text, None) trains as before the logs were read
    with the loss (a float each): the bar shows it with ``str``, the numbers to 4 digits."""
    task = _EpochRowsTask(n=8)
    real = task.loss

    def loss(model, batch, generator):
        out, logs = real(model, batch, generator)
        return out, {**logs, "phase": "warm-up", "note": None, "lr": np.float32(0.123456)}

    task.loss = loss
    Trainer(task, _cfg(tmp_path / "r", epochs=1, batch_size=2, progress=progress)).fit()
    assert json.loads((tmp_path / "r" / "card.json").read_text())["step"] == 4
    err = capsys.readouterr().err
    assert ("phase=warm-up, note=None, lr=0.1235" in err) == progress


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_the_step_before_the_weights_change(tmp_path, bad):
    """The loss read once per step still stops training at the step it turns non-finite,
    before backward and the optimizer (weights as the last step left them), naming it."""
    task = _EpochRowsTask(n=8)
    real = task.loss
    steps = []

    def loss(model, batch, generator):
        steps.append(model.weight.detach().clone())
        out, logs = real(model, batch, generator)
        return (out * bad if len(steps) == 3 else out), logs

    task.loss = loss
    tr = Trainer(task, _cfg(tmp_path / "r", epochs=1, batch_size=2, ckpt_every=1))
    with pytest.raises(FloatingPointError, match=f"the loss is {bad} at step 2;"):
        tr.fit()
    assert json.loads((tmp_path / "r" / "card.json").read_text())["step"] == 2
    assert torch.equal(_weights(tmp_path / "r")["weight"], steps[2])


def test_val_every_validates_every_n_epochs_the_last_and_a_stop(tmp_path):
    """``val_every=2`` over 5 epochs validates after epochs 2, 4 and 5 (the last); the card's
    history holds those, ``val_metrics`` the latest, and the weights are those of validating
    every epoch. A run stopped after epoch 3 and resumed validates as the uninterrupted one;
    one stopped there by ``max_steps`` validates epoch 3 (its end) too, and a resume may
    change ``val_every``."""

    def card(run: str) -> dict:
        return json.loads((tmp_path / run / "card.json").read_text())

    def epochs(run: str) -> list[int]:
        return [h["epoch"] for h in card(run)["history"]]

    def cfg(run: str, **kw) -> TrainConfig:
        return _cfg(tmp_path / run, epochs=5, batch_size=4, **kw)

    every = _EpochRowsTask(validates=True)
    assert Trainer(every, cfg("every")).fit()["n"] == 5
    sparse = _EpochRowsTask(validates=True)
    metrics = Trainer(sparse, cfg("sparse", val_every=2)).fit()
    assert sparse.validated == 3 and epochs("sparse") == [2, 4, 5]
    assert card("sparse")["val_metrics"] == metrics == card("sparse")["history"][-1]["metrics"]
    assert (card("sparse")["val_epoch"], card("sparse")["val_step"]) == (5, 10)
    assert [h["step"] for h in card("sparse")["history"]] == [4, 8, 10]
    assert torch.equal(
        _weights(tmp_path / "sparse")["weight"], _weights(tmp_path / "every")["weight"]
    )
    assert (
        card("sparse")["history"][-1]["metrics"]["w"]
        == card("every")["history"][-1]["metrics"]["w"]
    )

    Trainer(_EpochRowsTask(validates=True), cfg("cut", val_every=2)).fit(stop_at_step=6)
    assert epochs("cut") == [2] and card("cut")["epoch"] == 3
    assert (card("cut")["val_epoch"], card("cut")["val_step"]) == (2, 4)  # not the weights'
    Trainer(_EpochRowsTask(validates=True), cfg("cut", val_every=2)).fit(resume=tmp_path / "cut")
    assert epochs("cut") == [2, 4, 5]
    assert torch.equal(
        _weights(tmp_path / "cut")["weight"], _weights(tmp_path / "sparse")["weight"]
    )

    Trainer(_EpochRowsTask(validates=True), cfg("stop", val_every=2, max_steps=6)).fit()
    assert epochs("stop") == [2, 3]  # stopped at the end of epoch 3: validated
    Trainer(_EpochRowsTask(validates=True), cfg("stop", val_every=3)).fit(resume=tmp_path / "stop")
    assert epochs("stop") == [2, 3, 5] and card("stop")["train"]["val_every"] == 3


def test_a_zoo_card_says_which_epoch_its_validation_metrics_are_of(data_root, tmp_path, capsys):
    """A run stopped at the end of an epoch it did not validate (``--val-every``) keeps the
    metrics of an earlier epoch: its card and the zoo card made from it name that epoch and
    step (``val_epoch``, ``val_step``); a run card written before they were recorded gives them
    from its history, and one without validation gives none."""
    from semcom.cli import main
    from semcom.zoo import run_provenance

    run = tmp_path / "r"
    Trainer(_task(), _cfg(run, epochs=5, val_every=2)).fit(stop_at_step=12)  # 4 steps an epoch
    rc = json.loads((run / "card.json").read_text())
    per_epoch = rc["step"] // 3
    assert rc["epoch"] == 3 and [h["epoch"] for h in rc["history"]] == [2]
    assert (rc["val_epoch"], rc["val_step"]) == (2, 2 * per_epoch)
    zoo = tmp_path / "zoo"
    assert main(["zoo", "add", str(run), "cut", "--zoo-dir", str(zoo), "--allow-unfinished"]) == 0
    card = json.loads((zoo / "cut.json").read_text())
    assert card["val_metrics"] == rc["val_metrics"] and card["epochs"] == 3
    assert (card["val_epoch"], card["val_step"]) == (2, 2 * per_epoch)
    old = {k: v for k, v in rc.items() if k not in ("val_epoch", "val_step")}
    got = run_provenance(old)
    assert (got["val_epoch"], got["val_step"]) == (2, 2 * per_epoch)
    assert "val_epoch" not in run_provenance({**old, "history": [], "val_metrics": {}})


def test_val_every_option_reaches_the_run_and_its_resumes(data_root, tmp_path, capsys):
    """``--val-every 2`` is recorded in the card, kept by a plain ``--resume`` and may change
    with one (it changes when the run is measured, not what it trains)."""
    from semcom.cli import main

    run = tmp_path / "r"  # 3 of the 6 samples held out: one step of 2 per epoch
    argv = ["train", "jscc", *_SMALL[:-3], "--val-data", "0.5", "--val-limit", "1"]
    assert main([*argv, "--epochs", "3", "--max-steps", "1", "--val-every", "2",
                 "--quiet", "--out", str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["train", "jscc", "--resume", str(run), "--max-steps", "2"]) == 0
    assert "validation every 2 epochs and after the last" in capsys.readouterr().err
    card = json.loads((run / "card.json").read_text())
    assert card["train"]["val_every"] == 2 and [h["epoch"] for h in card["history"]] == [1, 2]
    assert main(["train", "jscc", "--resume", str(run), "--val-every", "5", "--quiet"]) == 0
    card = json.loads((run / "card.json").read_text())
    assert card["train"]["val_every"] == 5 and [h["epoch"] for h in card["history"]] == [1, 2, 3]
