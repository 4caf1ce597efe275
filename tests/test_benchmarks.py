"""Smoke tests of the on-demand scripts in ``benchmarks/``: each runs on tiny inputs (the
bundled ``samples`` images, or centre crops of them, where the script takes a data set) and its
printed figures are checked for form and sense, so that a script the library has moved away
from fails here."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUM = r"[-+]?(?:\d+\.?\d*(?:e[-+]?\d+)?|nan|inf)"


def run(script: str, *args: str, cache: Path, timeout: float = 300) -> str:
    """stdout of ``python benchmarks/SCRIPT ARGS`` (the library from this checkout's ``src``,
    the latent cache in ``cache``); fails the test on a non-zero exit."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "XDG_CACHE_HOME": str(cache),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )
    assert r.returncode == 0, f"{script} exited {r.returncode}:\n{r.stderr[-3000:]}"
    return r.stdout


def small_samples(folder: Path, n: int, crop: int) -> Path:
    """``folder`` holding the centre ``crop`` x ``crop`` crops of ``n`` of the bundled
    ``samples`` images as PNG (lossless): a data set of one's own (a folder) that encodes in
    a fraction of the whole images' time."""
    import numpy as np
    from PIL import Image

    from semcom.data.datasets import get_dataset

    data = get_dataset("samples", crop=crop, random_crop=False)
    folder.mkdir()
    for i in range(n):
        a = (data[i] * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(np.ascontiguousarray(a)).save(folder / f"{i}.png")
    return folder


def floats(line: str) -> list[float]:
    return [float(v) for v in re.findall(NUM, line)]


def finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def test_memory_format(tmp_path):
    out = run(
        "memory_format.py", "--codec", "deepjscc", "--size", "64x64", "--repeats", "1",
        cache=tmp_path,
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0].startswith("deepjscc, 64x64, 1 thread(s), best of 1")
    rows = {}
    for line in lines[1:3]:
        m = re.fullmatch(rf"\s+torch\.(\w+)\s+encode\s+({NUM})\s+decode\s+({NUM})", line)
        assert m, line
        rows[m[1]] = (float(m[2]), float(m[3]))
    assert set(rows) == {"contiguous_format", "channels_last"}
    assert all(v > 0 and finite(v) for pair in rows.values() for v in pair)
    m = re.fullmatch(rf"\s+channels-last speed-up: encode ({NUM})x, decode ({NUM})x", lines[3])
    assert m and float(m[1]) > 0 and float(m[2]) > 0, lines[3]
    m = re.fullmatch(rf"\s+max \|difference\| of decoded images: ({NUM})", lines[4])
    assert m and 0 <= float(m[1]) < 1e-4, lines[4]  # float rounding only


def test_latent_whiteness(tmp_path):
    ref = "deepjscc-c6-bsds-awgn10"
    out = run("latent_whiteness.py", "--data", "samples", "--ref", ref, cache=tmp_path)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    m = re.fullmatch(
        rf"{ref}: lag-1 ({NUM}) \(width\) / ({NUM}) \(height\), 2x2xC patch min/mean "
        rf"eigenvalue ({NUM}), 6 images of samples",
        lines[0],
    )
    assert m, lines[0]
    w, h, ev = (float(v) for v in m.groups())
    assert -1 <= w <= 1 and -1 <= h <= 1
    assert 0 < ev <= 1  # smallest over mean eigenvalue of a covariance


def test_snr_error_split(tmp_path):
    out = run(
        "snr_error_split.py", "--data", "samples", "--snr", "-10", "0", "--draws", "2",
        cache=tmp_path,
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "snr-estimator-deepjscc-c6-bsds on 6 samples latents x 2 draws (dB)"
    assert lines[1].split() == ["SNR", "RMSE", "bias", "image", "draw"]
    rows = [floats(ln) for ln in lines[2:]]
    assert [r[0] for r in rows] == [-10.0, 0.0]
    for _snr, rmse, bias, image, draw in rows:
        assert finite(rmse, bias, image, draw)
        assert rmse >= abs(bias) - 0.01 and image >= 0 and draw >= 0
        assert rmse < 10  # a working estimator is within a few dB on these images


def test_data_loading(tmp_path):
    out = run(
        "data_loading.py", "--data", "samples", "--crop", "32", "--batch-size", "4",
        "--batches", "2", "--repeats", "1", cache=tmp_path,
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "samples, 6 images, crops of 32, batches of 4, 0 workers"
    files = floats(re.fullmatch(rf"files:\s+({NUM}) crops/s", lines[1])[1])[0]
    m = re.fullmatch(
        rf"cached:\s+({NUM}) crops/s\s+\(cache: ({NUM}) s to fill, ({NUM}) MiB\)", lines[2]
    )
    assert m, lines[2]
    cached, fill, mib = (float(v) for v in m.groups())
    assert files > 0 and cached > 0 and fill >= 0 and mib > 0
    ratio = floats(re.fullmatch(rf"ratio:\s+({NUM})x", lines[3])[1])[0]
    # b / a of the unrounded rates: the printed ones are rounded to 1 crop/s, the ratio to 0.1
    lo, hi = (cached - 0.5) / (files + 0.5), (cached + 0.5) / max(files - 0.5, 1e-9)
    assert lo - 0.051 <= ratio <= hi + 0.051, (ratio, cached, files)


def test_normalize_power(tmp_path):
    out = run("normalize_power.py", "--shapes", "4x16", "--repeats", "3", cache=tmp_path)
    lines = out.splitlines()
    assert lines[0] == "float32, 1 thread(s), median of 3; CPU ms per call"
    assert lines[1] == "4x16:"
    modes = []
    for line in lines[2:5]:
        m = re.fullmatch(
            rf"\s+(forward, no grad|forward, graph|forward\+backward)\s+previous\s+({NUM})"
            rf"\s+library\s+({NUM})\s+plain\s+({NUM})\s+previous/library ({NUM})x"
            rf" \(wall ({NUM})x\)",
            line,
        )
        assert m, line
        modes.append(m[1])
        assert all(float(v) >= 0 and finite(float(v)) for v in m.groups()[1:4])
        assert float(m[5]) > 0 and float(m[6]) > 0
    assert modes == ["forward, no grad", "forward, graph", "forward+backward"]
    assert lines[5:] == ["  f, rms and gradient the same as previous's: yes"]


@pytest.mark.slow
def test_taef2_snr_identifiability(tmp_path):
    from semcom.codecs.taef2 import DECODER_REL, ENCODER_REL

    root = os.environ.get("SEMCOM_WEIGHTS")
    if not root or not all((Path(root) / rel).is_file() for rel in (ENCODER_REL, DECODER_REL)):
        pytest.skip("TAEF2 weights missing (set SEMCOM_WEIGHTS)")
    out = run(
        "taef2_snr_identifiability.py", "--dataset", "samples", "--images", "2", "--crop", "128",
        cache=tmp_path,
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "samples, 2 images, centre 128x128 crops"
    lo, hi, median = floats(lines[1].split(";")[0])
    assert 0 < lo <= median <= hi <= 1
    assert lines[2].startswith("decoded-image noise vs clean")
    rows = [floats(ln.replace("+-", " ")) for ln in lines[3:]]
    assert [r[0] for r in rows] == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert all(len(r) == 3 and finite(*r) and r[2] >= 0 for r in rows)


@pytest.mark.slow
def test_denoiser_paired_encode_snr(tmp_path):
    # two 128 x 128 images: 32 x 32 ADJSCC latents, the script's training crop
    data = str(small_samples(tmp_path / "images", 2, 128))
    out = run(
        "denoiser_paired_encode_snr.py", "--steps", "1", "--batch-size", "2", "--val-images",
        "1", "--train-data", data, "--val-data", data, cache=tmp_path,
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "latent-MSE gain over LMMSE at -5 / 0 / 5 dB"
    names = []
    for line in lines[1:]:
        m = re.fullmatch(rf"(shipped|paired|control)(?: \({NUM} s\))? (.*) dB", line)
        assert m, line
        names.append(m[1])
        gains = [float(v) for v in m[2].split(" / ")]
        assert len(gains) == 3 and finite(*gains)
        assert all(g > 0 for g in gains)  # the denoiser beats LMMSE (one step changes little)
    assert names == ["shipped", "paired", "control"]


def _evals(line: str, head: str) -> dict[float, float]:
    m = re.fullmatch(rf"{head} \{{(.*)\}}", line)
    assert m, line
    pairs = (kv.split(":") for kv in m[1].split(", "))
    return {float(k): float(v) for k, v in pairs}


@pytest.mark.slow
def test_denoiser_through_decoder(tmp_path, data_root):
    for sub in ("bsds500/train", "bsds500/val"):
        if not (data_root / sub).is_dir():
            pytest.skip(f"{data_root / sub} is missing")
    out = run(
        "denoiser_through_decoder.py", "--steps", "1", "--batch-size", "2", "--val-images", "1",
        "--threads", "1", "--out", str(tmp_path / "tuned.pt"), cache=tmp_path,
    )  # fmt: skip
    lines = out.splitlines()
    before, after = _evals(lines[0], "before"), _evals(lines[1], "after")
    gain = _evals(lines[2], r"gain \(dB\)")
    assert list(before) == list(after) == list(gain) == [-5.0, 0.0, 5.0]
    assert all(10 < v < 50 and finite(v) for v in [*before.values(), *after.values()])
    for s in gain:
        assert gain[s] == pytest.approx(after[s] - before[s], abs=2e-3)
    assert (tmp_path / "tuned.pt").is_file()


@pytest.mark.slow
def test_ab_revisions(tmp_path):
    """An A/A run (HEAD against HEAD): two timed runs, the same stored means."""
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    out = run(
        "ab_revisions.py", "HEAD", "--repeats", "1", "--", "eval", "--scheme", "deepjscc",
        "--cbr", "1/16", "--dataset", "samples", "--crop", "64", "--limit", "1", "--snr", "0",
        "--metrics", "psnr", cache=tmp_path,
    )  # fmt: skip
    lines = out.splitlines()
    for line in lines[:2]:
        assert re.fullmatch(rf"run 1 HEAD: {NUM} s \({NUM} s CPU\)", line), line
    for line, what in zip(lines[2:4], ("best", "best CPU"), strict=True):
        m = re.fullmatch(rf"{what}: HEAD ({NUM}) s, HEAD ({NUM}) s: ({NUM})x", line)
        assert m, line
        assert all(float(v) > 0 and finite(float(v)) for v in m.groups())
    assert lines[4:] == ["  largest difference of the psnr means: 0.00e+00"]
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True
    ).stdout
    assert not re.search(r"/tree-[01] ", listed), listed  # its worktrees are removed


@pytest.mark.slow
def test_ab_revisions_of_a_training_run(tmp_path, data_root):
    """``train`` at HEAD against a checkout folder of HEAD (``--against`` a folder: used as it
    is): a run folder per run, and the two last runs' weights compared (a seeded run: the same
    bytes)."""
    tree = tmp_path / "checkout"
    r = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), "HEAD"],
        capture_output=True,
    )
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    try:
        out = run(
            "ab_revisions.py", "HEAD", "--against", str(tree), "--repeats", "1", "--", "train",
            "jscc", "--model", "deepjscc", "--cbr", "1/16", "--width", "8", "--data",
            "samples", "--crop", "32", "--val-data", "none", "--epochs", "1", "--batch-size",
            "2", "--max-steps", "2", "--threads", "1", cache=tmp_path,
        )  # fmt: skip
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
    lines = out.splitlines()
    assert re.fullmatch(rf"run 1 HEAD: {NUM} s \({NUM} s CPU\)", lines[0]), lines[0]
    assert re.fullmatch(rf"run 1 {re.escape(str(tree))}: {NUM} s \({NUM} s CPU\)", lines[1])
    assert lines[2].startswith("best: ") and lines[3].startswith("best CPU: ")
    assert lines[4:] == ["  weights: the same bytes"]
