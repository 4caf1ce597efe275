"""What a sweep's result does not depend on, with the shipped schemes on small crops
(docs/results.md, "What a result depends on"): every per-image value is the same, bit for bit,
whatever the order of the schemes, the other images of the sweep (``--limit``, their order) and
the process; ``semcom eval``'s row of an image is ``get_scheme(...).transmit`` with the image's
seed, and ``semcom transmit``'s. Resuming (tests/test_cli.py) and torchrun sharding
(tests/test_eval.py) are pinned beside the code they test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semcom.channels import Channel
from semcom.cli import main
from semcom.data import get_dataset, save_image
from semcom.eval import RunKey, evaluate, image_seed
from semcom.metrics import compute_metrics
from semcom.schemes import get_scheme

#: fast schemes of every kind: a codec alone, an SNR-adaptive codec, a separation baseline (the
#: drawn gain decides what fits, else its fallback is shown) and a diffusion receiver
NAMES = ("deepjscc", "adjscc", "jpeg+capacity", "deepjscc+dm")
SNRS = [-5.0, 5.0, 15.0]
CROP = 64
CHANNELS = {
    "awgn": lambda: Channel("awgn"),
    "rayleigh-slow-estimated": lambda: Channel("rayleigh-slow", csi="estimated"),
    "rayleigh-fast": lambda: Channel("rayleigh-fast"),
}


@pytest.fixture(scope="module")
def schemes():
    return [(RunKey(n, 1 / 16), get_scheme(n, "1/16")) for n in NAMES]


@pytest.fixture(scope="module")
def images():
    data = get_dataset("samples", crop=CROP, random_crop=False)
    return [(i, data.names[i], data[i]) for i in range(3)]


def _values(rows: list[dict]) -> dict[tuple[str, int], list[float]]:
    return {(r["run"], r["image"]): r["psnr"] for r in rows}


@pytest.mark.parametrize("channel", list(CHANNELS))
def test_rows_do_not_depend_on_scheme_order_or_the_other_images(schemes, images, channel):
    """Each image has its own generator per scheme (``image_seed(seed, index)``): the schemes
    in reverse order, the images in reverse order or one image alone at its index give every
    value bit for bit (as ``--scheme`` order, ``--limit`` and resuming do in ``semcom eval``)."""

    def run(schemes, images):
        rows = evaluate(schemes, images, CHANNELS[channel](), SNRS, metrics=["psnr"],
                        progress=False)  # fmt: skip
        return _values(rows)

    ref = run(schemes, images)
    assert len(ref) == len(NAMES) * len(images)
    assert run(schemes[::-1], images[::-1]) == ref
    alone = run(schemes, images[1:2])
    assert alone == {k: v for k, v in ref.items() if k[1] == 1}
    # the images are told apart by their draws: the same image at another index is not equal
    moved = run(schemes[:1], [(0, "x", images[1][2])])
    assert moved[("deepjscc@1/16", 0)] != ref[("deepjscc@1/16", 1)]


def test_eval_row_is_transmit_with_the_images_seed(tmp_path, capsys):
    """``semcom eval``'s value of image i at each SNR is what ``get_scheme(...).transmit`` gives
    for the image expanded over a batch of ``--batch-size`` SNRs with a generator seeded
    ``image_seed(seed, i)`` (the batches in turn; separation baselines falling back to the data
    set's mean image), and ``semcom transmit`` of the image as a file gives it for the analog
    schemes (its separation baselines fall back to mid-grey: it has no data set)."""
    from semcom.separation.common import dataset_fallback

    channel = ["--channel", "rayleigh-slow", "--csi", "estimated"]
    argv = ["eval", *[w for n in NAMES for w in ("--scheme", n)], "--cbr", "1/16", "--dataset",
            "samples", "--crop", str(CROP), "--limit", "2", "--snr", *map(str, SNRS),
            "--metrics", "psnr", "--seed", "3", "--quiet", *channel]  # fmt: skip
    files = {}
    for batch in (8, 1):
        files[batch] = tmp_path / f"b{batch}.json"
        assert main([*argv, "--batch-size", str(batch), "--out", str(files[batch])]) == 0
    data = get_dataset("samples", crop=CROP, random_crop=False)
    mean, _ = dataset_fallback("samples", data, CROP)
    ch = Channel("rayleigh-slow", csi="estimated")
    schemes = {n: get_scheme(n, "1/16") for n in NAMES}
    schemes["jpeg+capacity"].fallback_image = mean  # as eval sets it
    for batch, path in files.items():
        runs = {r["scheme"]: r for r in json.loads(path.read_text())["runs"]}
        for name, scheme in schemes.items():
            got = []
            for i in range(2):
                g = torch.Generator().manual_seed(image_seed(3, i))
                vals: list[float] = []
                for start in range(0, len(SNRS), batch):
                    snr = torch.tensor(SNRS[start : start + batch], dtype=torch.float64)
                    x = data[i].unsqueeze(0).expand(len(snr), -1, -1, -1)
                    tx = scheme.transmit(x, ch, snr, g)
                    vals += [float(v) for v in compute_metrics(x, tx.images, ["psnr"])["psnr"]]
                got.append(vals)
            run = runs[name]
            want = [[float(f"{got[i][j]:.6g}") for i in range(2)] for j in range(len(SNRS))]
            assert run["per_image"]["psnr"] == want, (batch, name)
            assert run["psnr"] == [(got[0][j] + got[1][j]) / 2 for j in range(len(SNRS))]
            if batch == 8:
                assert any(v > 12 for v in run["psnr"]), name  # not all fallbacks

    # semcom transmit: the image as a file, index i in the list -> image_seed(seed, i)
    pngs = [tmp_path / f"img{i}.png" for i in range(2)]
    for i, p in enumerate(pngs):
        save_image(data[i], p)  # 8-bit photos: the same values read back
    capsys.readouterr()
    analog = [w for n in NAMES if n != "jpeg+capacity" for w in ("--scheme", n)]
    assert main(["transmit", *map(str, pngs), *analog, "--cbr", "1/16", "--snr",
                 *map(str, SNRS), "--metrics", "psnr", "--seed", "3", "--json", "--out",
                 str(tmp_path / "tx"), *channel]) == 0  # fmt: skip
    sent = json.loads(capsys.readouterr().out)["results"]
    runs = {r["scheme"]: r for r in json.loads(files[8].read_text())["runs"]}
    assert len(sent) == 3 * 2 * len(SNRS)
    for row in sent:
        i, j = int(row["image"][-1]), SNRS.index(row["snr_db"])
        assert float(f"{row['psnr']:.6g}") == runs[row["scheme"]]["per_image"]["psnr"][j][i]


def _eval_in_subprocess(argv: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    r = subprocess.run([sys.executable, "-m", "semcom.cli", *argv], env=env, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(Path(argv[argv.index("--out") + 1]).read_text())


@pytest.mark.slow
def test_same_seed_in_another_process_gives_the_same_file(tmp_path):
    """The same command in another process writes the same values, bit for bit (means and
    per-image values); with 2 threads instead of 1 they agree to float32 rounding (the CPU
    convolutions' rounding depends on the thread count at larger sizes: docs/results.md;
    at these sizes they have agreed exactly)."""
    argv = ["eval", *[w for n in NAMES for w in ("--scheme", n)], "--cbr", "1/16", "--dataset",
            "samples", "--crop", str(CROP), "--limit", "2", "--snr", *map(str, SNRS),
            "--metrics", "psnr", "--channel", "rayleigh-fast", "--quiet"]  # fmt: skip
    here = tmp_path / "here.json"
    assert main([*argv, "--out", str(here)]) == 0  # this process, 1 thread (conftest)
    ref = json.loads(here.read_text())
    assert ref["meta"]["threads"] == 1
    for threads in (1, 2):
        doc = _eval_in_subprocess([*argv, "--out", str(tmp_path / f"t{threads}.json")], threads)
        assert doc["meta"]["threads"] == threads
        for a, b in zip(ref["runs"], doc["runs"], strict=True):
            assert a["scheme"] == b["scheme"]
            if threads == 1:
                assert a["psnr"] == b["psnr"] and a["per_image"] == b["per_image"], a["scheme"]
            else:
                assert a["psnr"] == pytest.approx(b["psnr"], abs=1e-4), a["scheme"]
