"""The ``semcom`` command: transmit, eval (with resume), demo, list commands, errors.

Images are tiny (<= 64 px): the TAEF2 VAE is slow on CPU.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shlex
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semcom import cli
from semcom.channels.cbr import format_cbr
from semcom.cli import args as cli_args
from semcom.cli import build as cli_build
from semcom.cli import main
from semcom.cli import outputs as cli_outputs
from semcom.cli import parser as cli_parser
from semcom.cli import sweep as cli_sweep
from semcom.cli import transmit as cli_transmit


def write_png16(path: Path, arr: np.ndarray) -> Path:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    arr = np.asarray(arr, dtype=">u2")
    h, w, _ = arr.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
    path.write_bytes(data + chunk(b"IEND", b""))
    return path


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module", autouse=True)
def _reuse_schemes():
    """Build each scheme once per module (loading TAEF2 costs ~2 s on a busy CPU)."""
    import functools

    import semcom.schemes

    mp = pytest.MonkeyPatch()
    mp.setattr(semcom.schemes, "get_scheme", functools.lru_cache(semcom.schemes.get_scheme))
    yield
    mp.undo()


@pytest.fixture
def vae(weights_root, data_root):
    """The vae scheme needs TAEF2 (SEMCOM_WEIGHTS) and LPIPS weights."""
    return weights_root


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    d = tmp_path / "in"
    d.mkdir()
    smooth = np.linspace(0, 255, 40 * 48).reshape(40, 48).astype(np.uint8)
    Image.fromarray(smooth, mode="L").save(d / "gray.png")
    rgba = np.dstack([_rgb(40, 40, 1), np.full((40, 40), 128, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(d / "rgba.png")
    a16 = np.random.default_rng(2).integers(0, 65536, (32, 40, 3))
    write_png16(d / "deep.png", a16)
    Image.fromarray(_rgb(17, 33, 3)).save(d / "odd.png")  # 33 x 17 (W x H)
    Image.fromarray(_rgb(32, 32, 4)).save(d / "small.jpg")
    (d / "notes.txt").write_text("not an image\n")
    good = (d / "gray.png").read_bytes()
    (d / "corrupt.png").write_bytes(good[: len(good) // 2])
    return {p.stem if p.suffix != ".txt" else "text": p for p in d.iterdir()}


def _size(p: Path) -> tuple[int, int]:
    with Image.open(p) as im:
        return im.size


def run_ok(capsys, *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Traceback" not in err
    return out


def run_err(capsys, *argv: str) -> str:
    code = _main_code(list(argv))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error:" in lines[0] and "Traceback" not in err
    return lines[0]


def _main_code(argv: list[str]) -> int:
    """Exit code of main(argv), also when argparse exits via SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code or 0)


# ------------------------------------------------------------------ transmit
def test_transmit_awkward_images(vae, inputs, tmp_path, capsys):
    out_dir = tmp_path / "out"
    files = [inputs[k] for k in ("gray", "rgba", "deep", "odd")]
    argv = ["transmit", *map(str, files), "--scheme", "vae", "--channel", "awgn"]
    out = run_ok(capsys, *argv, "--snr", "-5", "5", "--out", str(out_dir))
    sizes = {"gray": (48, 40), "rgba": (40, 40), "deep": (40, 32), "odd": (33, 17)}
    for stem, size in sizes.items():
        for snr in ("-5", "5"):
            p = out_dir / f"{stem}_vae_snr{snr}dB.png"
            assert p.exists(), p
            assert _size(p) == size
            with Image.open(p) as im:
                assert im.mode == "RGB"
        assert (out_dir / f"{stem}_grid.png").exists()
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:4] == ["image", "scheme", "cbr", "snr_db"]
    assert {"psnr", "ssim", "ms_ssim", "lpips"} <= set(header)
    table = [ln.split() for ln in lines[1:9]]
    assert [(r[0], r[3]) for r in table] == [(s, v) for s in sizes for v in ("-5", "5")]
    # each image's own measured CBR (TAEF2's padding and side scalar: 0.0861 for 48x40,
    # 0.1521 for 33x17), not the nominal 1/12
    from semcom.channels import Channel, format_cbr
    from semcom.schemes import get_scheme

    vae = get_scheme("vae")
    for r in table:
        w, h = sizes[r[0]]
        assert r[2] == format_cbr(vae.cbr(h, w, Channel("awgn")).cbr), r
    assert table[-1][2] == "0.1521"
    assert any(ln.startswith("grid:") for ln in lines)
    # PSNR improves with SNR on the smooth gray image
    gray = [float(r[4]) for r in table if r[0] == "gray"]
    assert gray[1] > gray[0]


def test_transmit_json(vae, inputs, tmp_path, capsys):
    out = run_ok(
        capsys,
        "transmit",
        str(inputs["small"]),
        "--snr",
        "0",
        "10",
        "--metrics",
        "psnr",
        "ssim",
        "--out",
        str(tmp_path / "o"),
        "--json",
    )
    doc = json.loads(out)
    assert [r["snr_db"] for r in doc["results"]] == [0.0, 10.0]
    for r in doc["results"]:
        assert r["image"] == "small" and r["scheme"] == "vae"
        # the CBR as eval's results files give it: a number, and its printed form
        assert isinstance(r["cbr"], float) and r["cbr"] == pytest.approx(1 / 12, rel=0.1)
        assert r["cbr_str"] == format_cbr(r["cbr"])
        assert isinstance(r["psnr"], float) and isinstance(r["ssim"], float)
        assert "lpips" not in r
    assert [Path(g).name for g in doc["grids"]] == ["small_grid.png"]


def test_transmit_json_nan_is_null(vae, inputs, tmp_path, capsys):
    # LPIPS cannot be computed on a 17-px-high image: null in JSON, a warning on stderr
    argv = ["transmit", str(inputs["odd"]), "--metrics", "psnr", "lpips", "--json"]
    code = main([*argv, "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0
    doc = json.loads(out)  # strict JSON (no NaN)
    assert doc["results"][0]["lpips"] is None
    assert "warning" in err and "lpips" in err


def test_eval_nan_metric_is_strict_json_and_read_back(tmp_path, capsys, monkeypatch):
    """A metric that cannot be computed (SSIM on 8 px images) is written as null, never as bare
    NaN (strict JSON parsers reject it), and table / plot / merge / resume read it as NaN."""
    out = tmp_path / "r.json"
    argv = ["eval", "--scheme", "jpeg+capacity", "--cbr", "1/2", "--dataset", "samples",
            "--crop", "8", "--snr", "10", "20", "--metrics", "psnr", "ssim", "--limit", "2",
            "--quiet", "--out", str(out)]  # fmt: skip
    # a --crop too small for a metric is refused before any work ...
    line = run_err(capsys, *argv)
    assert "--crop 8: ssim cannot be computed on 8x8 images" in line and not out.exists()
    # ... images that small without --crop (a data set of its own) reach the sweep: crops
    # without the check stand in for them
    monkeypatch.setattr(cli_sweep, "_centre_crop", lambda a: {"crop": a.crop, "random_crop": False})
    assert main(argv) == 0
    assert "ssim not computed" in capsys.readouterr().err

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))

    run = strict(out.read_text())["runs"][0]
    assert run["ssim"] == [None, None]
    assert all(isinstance(v, float) and math.isfinite(v) for v in run["psnr"])
    table = run_ok(capsys, "table", str(out), "--metrics", "psnr", "ssim")
    # a metric not computed is shown as "-" (it is read back as NaN), not as "nan"
    assert "| jpeg+capacity | 1/2 | ssim | - | - |" in table and "nan" not in table.lower()
    merged = tmp_path / "m.json"
    run_ok(capsys, "merge", str(out), "--out", str(merged))
    assert strict(merged.read_text())["runs"][0]["ssim"] == [None, None]
    assert run_ok(capsys, "plot", str(out), "--out", str(tmp_path / "p.png")).strip() == (
        f"wrote {tmp_path / 'p.png'}"
    )
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the file it says it wrote: no suffix was "wrote figA" with figA.png written (and a
    # folder's name became one beside it); another suffix got a PNG or a JPEG by the suffix
    for bad in ("figA", "p.jpg"):
        assert "give a name ending in .png" in run_err(capsys, "plot", str(out), "--out", bad)
    (tmp_path / "d.png").mkdir()
    assert "is a folder" in run_err(capsys, "plot", str(out), "--out", str(tmp_path / "d.png"))
    assert not list(Path.cwd().glob("figA*"))
    # an interrupted sweep's partial rows hold null too, and resume reads them as NaN
    from semcom.eval.sweep import PartialResults

    p = tmp_path / "x.partial.jsonl"
    PartialResults(p, {"k": 1}).add({"run": "a", "image": 0, "ssim": [float("nan"), 0.5]})
    assert '"ssim": [null, 0.5]' in p.read_text()
    again = PartialResults(p, {"k": 1}).rows[("a", 0)]["ssim"]
    assert math.isnan(again[0]) and again[1] == 0.5


def test_json_safe_nulls_non_finite_floats():
    from semcom.paths import json_safe, json_text

    assert json_safe({"a": [float("nan"), 1.0], "b": float("inf"), "c": (2, -float("inf"))}) == {
        "a": [None, 1.0],
        "b": None,
        "c": [2, None],
    }
    assert json_text({"x": float("nan")}) == '{"x": null}'


@pytest.mark.parametrize(
    "channel",
    [["--channel", "rayleigh-slow", "--csi", "estimated"], ["--channel", "rayleigh-fast"]],
)
def test_transmit_fading(vae, inputs, tmp_path, capsys, channel):
    out_dir = tmp_path / "o"
    out = run_ok(
        capsys,
        "transmit",
        str(inputs["gray"]),
        *channel,
        "--snr",
        "0",
        "20",
        "--metrics",
        "psnr",
        "--out",
        str(out_dir),
        "--json",
    )
    assert (out_dir / "gray_vae_snr0dB.png").exists()
    assert (out_dir / "gray_vae_snr20dB.png").exists()
    assert (out_dir / "gray_grid.png").exists()
    # the fading link works: on a smooth image 20 dB (estimated CSI / fast fading) beats
    # 0 dB clearly (TAEF2 cannot code a noise image at any SNR)
    psnr = {r["snr_db"]: r["psnr"] for r in json.loads(out)["results"]}
    assert psnr[20.0] > psnr[0.0] + 1.0, psnr


def test_transmit_seed_reproducible(vae, inputs, tmp_path, capsys):
    def png(seed, name):
        d = tmp_path / name
        args = ["transmit", str(inputs["small"]), "--channel", "rayleigh-slow", "--snr", "0"]
        run_ok(capsys, *args, "--metrics", "psnr", "--seed", str(seed), "--out", str(d))
        return (d / "small_vae_snr0dB.png").read_bytes()

    a, b, c = png(7, "a"), png(7, "b"), png(8, "c")
    assert a == b
    assert a != c


def test_transmit_same_stem_not_overwritten(vae, tmp_path, capsys):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        Image.fromarray(_rgb(32, 32, ord(sub))).save(tmp_path / sub / "img.png")
    out_dir = tmp_path / "o"
    files = [str(tmp_path / "x" / "img.png"), str(tmp_path / "y" / "img.png")]
    run_ok(capsys, "transmit", *files, "--metrics", "psnr", "--out", str(out_dir))
    assert (out_dir / "img_vae_snr0dB.png").exists()
    assert (out_dir / "img_2_vae_snr0dB.png").exists()


@pytest.mark.parametrize("bad", ["corrupt", "text"])
def test_transmit_bad_file(inputs, tmp_path, capsys, bad):
    line = run_err(capsys, "transmit", str(inputs[bad]), "--out", str(tmp_path / "o"))
    assert line.startswith("semcom: error:")
    assert str(inputs[bad]) in line
    assert not (tmp_path / "o").exists()  # failed before any work


def test_transmit_missing_file(tmp_path, capsys):
    line = run_err(capsys, "transmit", str(tmp_path / "nope.png"), "--out", str(tmp_path))
    assert "nope.png" in line and "not found" in line


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--scheme", "nope"], "unknown scheme 'nope'; available: "),
        (["--scheme", "deepjsc"], "unknown scheme 'deepjsc'; did you mean 'deepjscc'"),
        (["--cbr", "abc"], "invalid CBR 'abc'"),
        (["--cbr", "-1"], "CBR"),
        (["--snr", "abc"], "invalid SNR 'abc'"),
        (["--snr", "nan"], "invalid SNR 'nan'"),
        (["--snr=-1000"], "within +-150"),  # N0 would overflow float32 (NaN metrics)
        # negative fractions, exponents and -inf are values with their own message (argparse
        # alone takes them for unknown options: "expected one argument")
        (["--cbr", "-1/16"], "CBR must be positive and at most 64, got '-1/16'"),
        (["--snr", "-1e3"], "invalid SNR '-1e3'"),
        (["--snr", "-inf"], "invalid SNR '-inf'"),
        # whole option names only: an abbreviation breaks once another option shares it
        (["--metric", "psnr"], "unrecognized arguments: --metric"),
        (["--device", "meta"], "no such device"),
        # an option none of the asked schemes (here vae) takes would change nothing: refused
        (["--snr-source", "moment"], "--snr-source applies to the schemes"),
        (["--steps", "4"], "--steps applies to the schemes"),
        (["--metrics", "fid"], "invalid choice: 'fid'"),
        (["--channel", "rician"], "invalid choice: 'rician'"),
        (["--pilots", "0"], "positive integer"),
        # pilots estimate the channel: with perfect CSI (the default) they changed nothing
        (["--pilots", "64"], "--pilots applies to --csi estimated"),
        (["--device", "nonsense"], "invalid --device"),
        # the fast-fading samplers on a channel with one level per image: a mislabelled copy
        # of the plain receiver
        (["--scheme", "vae+dm", "--fading", "waterfill"], "--fading applies to --channel rayl"),
        (
            ["--scheme", "vae+dm", "--channel", "rayleigh-slow", "--fading-samples", "4"],
            "--fading-samples applies to --channel rayleigh-fast",
        ),
    ],
)
def test_transmit_bad_options(inputs, tmp_path, capsys, argv, expect):
    line = run_err(capsys, "transmit", str(inputs["small"]), "--out", str(tmp_path), *argv)
    assert expect in line


def test_eval_spread_needs_limit_and_metrics_count_once(tmp_path, capsys):
    base = ["eval", "--scheme", "jpeg+capacity", "--cbr", "1/2", "--dataset", "samples",
            "--crop", "16", "--snr", "10", "--quiet"]  # fmt: skip
    line = run_err(capsys, *base, "--spread", "--out", str(tmp_path / "s.json"))
    assert "--spread spreads --limit N images" in line and not (tmp_path / "s.json").exists()
    # a metric named twice is one column of transmit's table
    photo = tmp_path / "p.png"
    Image.new("RGB", (16, 16), (90, 120, 40)).save(photo)
    table = run_ok(capsys, "transmit", str(photo), "--scheme", "jpeg+capacity", "--cbr", "1/2",
                   "--snr", "10", "--metrics", "psnr", "ssim", "psnr",
                   "--out", str(tmp_path / "t"))  # fmt: skip
    assert table.splitlines()[0].split() == ["image", "scheme", "cbr", "snr_db", "psnr", "ssim"]


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--scheme", "vae"], "give a '+dm' scheme (vae+dm, deepjscc+dm, adjscc+dm), not 'vae'"),
        (["--fading", "waterfill"], "--fading applies to --channel rayleigh-fast"),  # no channel
    ],
)
def test_perturb_bad_options(tmp_path, capsys, argv, expect):
    line = run_err(capsys, "experiment", "perturb", *argv, "--out", str(tmp_path / "p.json"))
    assert expect in line and not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("scheme", ["vae", "vae+dm"])
def test_taef2_schemes_refuse_another_cbr(scheme):
    from semcom.schemes import get_scheme

    msg = f"scheme '{scheme}' has a fixed CBR of 1/12 (got 1/16)"
    with pytest.raises(ValueError, match=re.escape(msg)):
        get_scheme(scheme, 1 / 16)


def test_vae_fixed_cbr(vae, inputs, tmp_path, capsys):
    line = run_err(
        capsys, "transmit", str(inputs["small"]), "--cbr", "1/16", "--out", str(tmp_path)
    )
    assert "fixed CBR of 1/12 (got 1/16)" in line  # as the user wrote it
    # next to schemes with variants, --cbr picks their variants and vae runs at its own CBR
    out = tmp_path / "mix"
    table = run_ok(capsys, "transmit", str(inputs["small"]), "--scheme", "vae", "--scheme",
                   "jpeg+capacity", "--cbr", "1/16", "--snr", "5", "--metrics", "psnr",
                   "--out", str(out))  # fmt: skip
    rows = [ln.split() for ln in table.splitlines() if ln.split()[:1] == ["small"]]
    assert sorted(r[1] for r in rows) == ["jpeg+capacity", "vae"], table
    assert [r[2] for r in rows if r[1] == "jpeg+capacity"] == ["1/16"]


def test_outputs_checked_before_any_work(tmp_path, capsys, monkeypatch):
    """A folder given as the output file fails at once (no sweep first, no partial file); a
    missing folder of --out / --json is created."""
    from semcom.eval import sweep

    monkeypatch.setattr(sweep, "evaluate", lambda *a, **k: pytest.fail("ran before the check"))
    folder = tmp_path / "adir"
    folder.mkdir()
    line = run_err(capsys, *EVAL, "--out", str(folder))
    assert "is a folder" in line and list(folder.iterdir()) == []
    line = run_err(capsys, "bench", "--scheme", "vae", "--json", str(folder))
    assert "--json" in line and "is a folder" in line
    assert not list(tmp_path.glob("*.partial*"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_outputs_that_are_not_regular_files_are_refused(tmp_path, capsys, monkeypatch):
    """A pipe or a device as the output file (``--out /dev/stdout``, ``--out /dev/null``): eval
    read it to see whose results it held and waited for ever; with --force it swept and then
    replaced it by a regular file (as root, /dev/null itself), and merge replaced it at once."""
    from semcom.eval import sweep

    monkeypatch.setattr(sweep, "evaluate", lambda *a, **k: pytest.fail("ran before the check"))
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    r = tmp_path / "r.json"
    r.write_text(json.dumps({"runs": []}))
    for argv in (  # (the old code waited on the last one: it comes after those it failed)
        ["merge", str(r), "--out", str(pipe), "--force"],
        [*EVAL, "--out", str(pipe), "--force"],
        ["bench", "--scheme", "vae", "--json", str(pipe), "--force"],
        [*EVAL, "--out", str(pipe)],
    ):
        line = run_err(capsys, *argv)
        assert f"{str(pipe)!r} is not a regular file" in line, line
        assert stat.S_ISFIFO(pipe.lstat().st_mode)
    line = run_err(capsys, *EVAL, "--out", str(r / "x.json"))  # a file where a folder goes
    assert "cannot create its folder: a part of it is a file" in line
    assert "--out is empty: give a file name" in run_err(capsys, *EVAL, "--out", "")


def test_demo_refuses_a_file_as_out_before_loading_networks(tmp_path, capsys, monkeypatch):
    from semcom import schemes

    monkeypatch.setattr(schemes, "get_scheme", lambda *a, **k: pytest.fail("loaded first"))
    f = tmp_path / "f.txt"
    f.write_text("mine\n")
    line = run_err(capsys, "demo", "--out", str(f))
    assert "is a file: give a folder for the images" in line and f.read_text() == "mine\n"


def test_bench_draws_with_its_seed_and_takes_no_metrics(capsys, monkeypatch):
    """bench drew every noise with seed 0 whatever --seed said, and took --metrics, which it
    never computes; it takes --crop as eval does (it had none: whole images only)."""
    from semcom.eval import bench

    seen = {}

    def spy(schemes, images, channel, snrs, repeats=1, seed=0):
        seen.update(seed=seed, snrs=list(snrs), images=[tuple(x.shape) for x in images])
        return []

    monkeypatch.setattr(bench, "bench_schemes", spy)
    monkeypatch.setattr(bench, "format_bench", lambda rows: "")
    run_ok(capsys, "bench", "--scheme", "jpeg+capacity", "--cbr", "1/16", "--limit", "1",
           "--snr", "3", "--seed", "7", "--crop", "24")  # fmt: skip
    assert seen == {"seed": 7, "snrs": [3.0], "images": [(3, 24, 24)]}  # a crop, as eval takes
    # --json alone prints the settings and rows as JSON instead of the table (as transmit's)
    row = {"scheme": "jpeg+capacity@1/16", "snr_db": 0.0, "denoise": 0.5, "decode": 1.0,
           "total": 1.5}  # fmt: skip
    monkeypatch.setattr(bench, "bench_schemes", lambda *a, **k: [dict(row)])
    out = run_ok(capsys, "bench", "--scheme", "jpeg+capacity", "--cbr", "1/16", "--json")
    out = json.loads(out)
    assert out["rows"] == [{**row, "rx_ratio": 1.5, "reference": "jpeg+capacity@1/16"}]
    assert out["settings"]["images"] == 2 and out["settings"]["dataset"] == "kodak"
    assert out["settings"]["command"].startswith("semcom bench --scheme jpeg+capacity")
    assert out["settings"]["csi"] == "perfect" and "pilots" not in out["settings"]
    out = json.loads(run_ok(capsys, "bench", "--scheme", "jpeg+capacity", "--cbr", "1/16",
                            "--csi", "estimated", "--pilots", "4", "--json"))  # fmt: skip
    assert (out["settings"]["csi"], out["settings"]["pilots"]) == ("estimated", 4)  # (unsaid)
    line = run_err(capsys, "bench", "--scheme", "jpeg+capacity", "--metrics", "psnr")
    assert "unrecognized arguments: --metrics" in line


def test_help_shows_each_commands_defaults(capsys):
    """--help says what an option left out does: each command's own --snr grid and the other
    values (not flags, nor options without a default)."""
    for argv, shown in (
        (["eval"], ["SNR grid, dB (Es/N0) (default: -10 -5 0 5 10 15 20)", "(default: kodak)"]),
        (["transmit"], ["(Es/N0) (default: 0)", "same noise) (default: 0)"]),
        (["bench"], ["(default: 0 15)", "number of images (default: 2)"]),
        (["table"], ["(default: psnr)"]),
        (["eval"], ["--csi estimated only (default 16; 1 under rayleigh-fast)"]),
        (["experiment", "perturb"], ["same noise) (default: 0)", "cpu or cuda (default: cpu)"]),
        (["train", "jscc"], ["JSCC codec (default: deepjscc)", "(default: awgn)"]),
    ):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for want in shown:
            assert want in text, (argv, want)
        assert "(default: None)" not in text and "(default: False)" not in text


def test_transmit_notes_transparency_and_an_earlier_runs_files(tmp_path, capsys):
    """A transparent input is said to be composited over white (an opaque RGBA is not); files
    of an earlier run left beside this run's outputs are counted in a note."""
    clear, opaque = tmp_path / "clear.png", tmp_path / "opaque.png"
    Image.new("RGBA", (16, 16), (200, 10, 10, 128)).save(clear)
    Image.new("RGBA", (16, 16), (200, 10, 10, 255)).save(opaque)
    out = tmp_path / "o"
    base = ["transmit", "--scheme", "jpeg+capacity", "--cbr", "1/2", "--snr", "10",
            "--out", str(out)]  # fmt: skip
    assert main([*base, str(clear), str(opaque)]) == 0
    err = capsys.readouterr().err
    assert f"{clear}: transparent pixels, sent composited over white" in err
    assert str(opaque) not in err and "earlier run" not in err
    old = sorted(out.iterdir())
    for f in old:
        os.utime(f, (f.stat().st_atime - 3600, f.stat().st_mtime - 3600))
    assert main([*base, str(opaque)]) == 0
    err = capsys.readouterr().err
    kept = [f for f in old if "clear" in f.name]
    assert kept and f"also holds {len(kept)} files of an earlier run (kept)" in err


def test_transmit_out_must_be_a_folder(inputs, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    line = run_err(capsys, "transmit", str(inputs["gray"]), "--out", str(afile))
    assert "is a file: give a folder" in line and afile.read_text() == "keep me\n"


def test_transmit_never_replaces_a_file_it_did_not_write(tmp_path, capsys):
    """A user's file named like one of transmit's outputs (a grid, a reconstruction) is
    refused before any work and kept; transmit's own files of an earlier run are replaced
    (their PNG Software chunk); --force replaces anything."""
    photo = tmp_path / "img.png"
    Image.fromarray(_rgb(24, 24, 5)).save(photo)
    out = tmp_path / "o"
    base = ["transmit", str(photo), "--scheme", "jpeg+capacity", "--cbr", "1/2", "--snr",
            "10", "--metrics", "psnr", "--out", str(out)]  # fmt: skip
    out.mkdir()
    for name in ("img_grid.png", "img_jpeg+capacity_1-2_snr10dB.png"):
        mine = out / name
        mine.write_bytes(photo.read_bytes())
        line = run_err(capsys, *base)
        assert f"{str(mine)!r} already exists and is not an image semcom wrote" in line
        assert "--force" in line and mine.read_bytes() == photo.read_bytes()
        assert sorted(f.name for f in out.iterdir()) == [name]  # nothing written
        mine.unlink()
    for name in ("img_grid.png", "img_jpeg+capacity_1-2_snr10dB.png"):  # both: one line
        (out / name).write_bytes(photo.read_bytes())
    line = run_err(capsys, *base)
    assert "(and 1 more) already exists and is not an image semcom wrote" in line
    for f in out.iterdir():
        f.unlink()
    run_ok(capsys, *base)
    written = sorted(f.name for f in out.iterdir())
    assert written == ["img_grid.png", "img_jpeg+capacity_1-2_snr10dB.png"]
    assert all(cli_outputs._is_ours_png(out / f) for f in written)
    run_ok(capsys, *base)  # a re-run replaces its own files
    (out / "img_grid.png").write_bytes(photo.read_bytes())
    run_ok(capsys, *base, "--force")
    assert (out / "img_grid.png").read_bytes() != photo.read_bytes()
    assert not cli_outputs._is_ours_png(photo)


def test_demo_keeps_a_table_it_did_not_write(vae, tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "table.txt").write_text("my notes\n")
    args = ["demo", "--out", str(out), "--limit", "1", "--size", "32", "--snr", "0",
            "--metrics", "psnr"]  # fmt: skip
    line = run_err(capsys, *args)
    assert "table.txt' already exists and is not a table semcom demo wrote" in line
    assert (out / "table.txt").read_text() == "my notes\n"
    run_ok(capsys, *args, "--force")
    run_ok(capsys, *args)  # its own table is replaced on a re-run
    assert (out / "table.txt").read_text().split()[:4] == ["image", "scheme", "cbr", "snr_db"]


def test_experiments_keep_a_photo_where_their_figure_goes(tmp_path, capsys):
    """The experiments write NAME.png next to --out NAME.json: a photo there is refused (it
    was replaced), and a .png --out (the figure would replace the JSON) is refused."""
    photo = tmp_path / "q.png"
    Image.fromarray(_rgb(8, 8)).save(photo)
    before = photo.read_bytes()
    for exp in ("perturb", "ood"):
        line = run_err(capsys, "experiment", exp, "--out", str(tmp_path / "q.json"))
        assert f"the figure {str(photo)!r} already exists and is not a figure" in line
        line = run_err(capsys, "experiment", exp, "--out", str(photo))
        assert "names the results JSON" in line and "give a .json name" in line
        upper = tmp_path / "Q.PNG"  # the suffix in any case
        upper.write_bytes(before)
        line = run_err(capsys, "experiment", exp, "--out", str(upper))
        assert "names the results JSON" in line and "give a .json name" in line
        upper.unlink()
    assert photo.read_bytes() == before and not (tmp_path / "q.json").exists()


def test_repeated_snrs_are_sent_once(vae, inputs, tmp_path, capsys):
    code = main(["transmit", str(inputs["gray"]), "--snr", "0", "10", "0", "--metrics",
                 "psnr", "--out", str(tmp_path / "o"), "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0 and "repeated --snr values are sent once" in err
    assert [r["snr_db"] for r in json.loads(out)["results"]] == [0.0, 10.0]


@pytest.mark.slow
def test_errors_in_subprocess(inputs, tmp_path):
    """Real exit codes and stderr: one line, no traceback."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for argv in (["transmit", str(inputs["text"]), "--out", str(tmp_path)],):
        r = subprocess.run(
            [sys.executable, "-m", "semcom.cli", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr and "error:" in r.stderr


def test_help_and_usage_errors_do_not_import_sionna(tmp_path):
    """The parser and a usage error stay light: Sionna (with SciPy, Matplotlib and
    torch._dynamo, ~2 s of imports) loads when a channel first sends something."""
    code = (
        "import sys\n"
        "from semcom.cli import main\n"
        "argv = ['eval', '--scheme', 'adjscc', '--dataset', 'kodak', '--out', 'r.json']\n"
        "assert main(argv) == 2\n"
        "heavy = ('sionna', 'scipy', 'matplotlib', 'torch._dynamo')\n"
        "assert not [m for m in heavy if m in sys.modules], sys.modules.keys() & set(heavy)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert "give a CBR" in r.stderr


RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["table", "--help"],
        ["eval", "--help"],
        ["train", "jscc", "--help"],
        ["zoo", "add", "--help"],
        ["datasets"],
        ["schemes"],
        ["table", "{results}/kodak-awgn.json"],
        [
            "table",
            "{results}/kodak-awgn.json",
            "--ci",
            "--anchors",
            "{results}/anchors/kodak-awgn.json",
        ],
        [
            "compare",
            "{results}/kodak-awgn.json",
            "--scheme",
            "adjscc+dm@1/16",
            "--against",
            "adjscc@1/16",
        ],
        ["plot", "{results}/kodak-awgn.json", "--ci", "--out", "x.png"],
        [
            "merge",
            "{results}/cifar10-awgn-adjscc.json",
            "{results}/cifar10-awgn-deepjscc.json",
            "--out",
            "m.json",
        ],
    ],
    ids=lambda a: " ".join(w for w in a if "{" not in w)[:40],
)
def test_help_and_the_results_commands_do_not_import_torch(tmp_path, argv):
    """``semcom --help``, every command's ``--help``, the listings (datasets, schemes) and the
    commands that read results files (table, compare, plot, merge) run without torch (~2 s of
    imports): a torch import at the top of a module they load (semcom.devices, the cli
    modules, a package's __init__) fails here. The command still does its work."""
    argv = [w.format(results=RESULTS) for w in argv]
    code = (
        "import sys\n"
        "from semcom.cli import main\n"
        "try:\n"
        f"    rc = main({argv!r})\n"
        "except SystemExit as e:\n"  # --help
        "    rc = e.code\n"
        "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[-1] == "torch imported: False", r.stderr
    if argv[-1] == "--help":
        assert r.stdout.startswith("usage: semcom"), r.stdout
    elif argv[0] in ("plot", "merge"):
        assert (tmp_path / argv[-1]).stat().st_size > 0
    else:
        assert r.stdout.strip(), r.stderr


def test_light_packages_still_reach_their_torch_based_names():
    """semcom.channels, semcom.eval and semcom.train load their torch-based names on first use:
    every name of their ``__all__`` (and ``from X import *``) still resolves, to the object of
    the module that defines it; the names the CLI offers are those the modules implement."""
    import importlib

    from semcom import names
    from semcom.codecs.jscc import MODELS
    from semcom.diffusion import receiver, registry

    for pkg in ("semcom.channels", "semcom.eval", "semcom.train"):
        mod = importlib.import_module(pkg)
        star: dict = {}
        exec(f"from {pkg} import *", star)
        for name in mod.__all__:
            assert star[name] is getattr(mod, name), (pkg, name)
            assert name in dir(mod), (pkg, name)
        with pytest.raises(AttributeError):
            mod.no_such_name  # noqa: B018
    from semcom.channels import Channel
    from semcom.channels.models import Channel as Defined

    assert Channel is Defined
    import semcom.channels.equalize  # the module of the same name does not hide the function

    assert callable(semcom.channels.equalize)
    assert tuple(MODELS) == names.JSCC_MODELS
    assert (registry.DM_STOPS, receiver.RULES) == (names.DM_STOPS, names.RULES)


def test_lazy_packages_list_and_load_their_submodules_and_names_before_first_use(tmp_path):
    """In a fresh process, before any lazy name is read: ``dir()`` of a light package lists its
    lazy names and submodules, a submodule is reached as an attribute (``semcom.channels.cbr``,
    imported then) and a name is the object of its module; none of it imports torch."""
    code = (
        "import sys\n"
        "import semcom.channels as c, semcom.eval as e\n"
        "assert not {'semcom.channels.cbr', 'semcom.eval.sweep'} & set(sys.modules)\n"
        "assert {'format_cbr', 'equalize', 'Channel', 'cbr'} <= set(dir(c)), dir(c)\n"
        "assert c.cbr.__name__ == 'semcom.channels.cbr'\n"
        "assert e.sweep.__name__ == 'semcom.eval.sweep'\n"
        "assert c.format_cbr is sys.modules['semcom.channels.cbr'].format_cbr\n"
        "assert 'torch' not in sys.modules\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ eval
EVAL = ["eval", "--scheme", "vae", "--dataset", "samples", "--crop", "48", "--snr", "0", "10"]


def test_eval_says_what_the_receiver_clamped(tmp_path, capsys):
    """The issues' bad input (an SNR outside the schedule's range) is counted per SNR in the
    results file and said under its SNR with -v; without -v one line says there is some."""
    argv = ["eval", "--scheme", "vae+dm", "--dataset", "samples", "--crop", "48", "--limit", "2"]
    argv += ["--snr", "-60", "0", "60", "--metrics", "psnr", "--out", str(tmp_path / "r.json")]
    text = run_ok(capsys, *argv, "-v")
    lines = text.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.strip().startswith("SNR  -60.0 dB"))
    assert lines[i + 1].strip() == (
        "clamped: SNR below the diffusion schedule: t* = T, started from noise (2 of 2)"
    )
    assert "clamped" not in lines[i + 2]  # 0 dB: nothing
    assert "SNR above the diffusion schedule: t* = 0, denoiser skipped (2 of 2)" in text
    (run,) = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert run["counts"]["step_clamped_low"] == [2, 0, 0]
    assert run["counts"]["step_clamped_high"] == [0, 0, 2]
    quiet = run_ok(capsys, *argv[:-1], str(tmp_path / "q.json"))
    assert "clamped:" not in quiet and "the receiver clamped some inputs: -v says where" in quiet


def test_transmit_notes_a_gray_input(inputs, tmp_path, capsys):
    """A gray file is sent as RGB and may come back tinted: said once, for that file only."""
    argv = ["transmit", str(inputs["gray"]), str(inputs["small"]), "--scheme", "jpeg+capacity"]
    assert main([*argv, "--cbr", "1/16", "--snr", "10", "--metrics", "psnr", "--out",
                 str(tmp_path)]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert f"semcom: note: {inputs['gray']}: gray, sent as RGB" in err
    assert str(inputs["small"]) not in err


def test_transmit_says_what_the_receiver_clamped(inputs, tmp_path, capsys):
    argv = ["transmit", str(inputs["small"]), "--scheme", "vae+dm", "--snr", "-60", "0"]
    argv += ["--metrics", "psnr", "--out", str(tmp_path)]
    text = run_ok(capsys, *argv, "-v")
    assert "small vae+dm SNR -60 dB: clamped: SNR below the diffusion schedule" in text
    assert "SNR 0 dB: clamped" not in text
    assert "-v says where" in run_ok(capsys, *argv)
    rows = json.loads(run_ok(capsys, *argv, "--json"))["results"]
    assert [r.get("counts") for r in rows] == [{"step_clamped_low": 1}, None]


def _strip_volatile(doc):
    doc = json.loads(json.dumps(doc))
    doc.pop("meta")
    for run in doc["runs"]:
        run.pop("seconds_per_image")
    return doc


def test_eval_results_json(vae, tmp_path, capsys):
    out = tmp_path / "r.json"
    text = run_ok(capsys, *EVAL, "--limit", "2", "--out", str(out))
    assert f"wrote {out}" in text
    doc = json.loads(out.read_text())
    assert doc["semcom_version"] == "0.1.0"
    assert doc["dataset"] == {"name": "samples", "n_images": 2, "crop": 48}
    assert doc["channel"] == {"name": "awgn", "csi": "perfect"}
    assert len(doc["runs"]) == 1
    run = doc["runs"][0]
    assert run["scheme"] == "vae"
    # TAEF2: 32 x 6 x 6 reals = 576 complex symbols + the latent RMS side symbols, per
    # 3 x 48 x 48 source values (README "Conventions": CBR in complex channel uses per source value)
    from semcom.channels.cbr import SCALAR_SIDE_SYMBOLS

    assert run["cbr"] == pytest.approx((32 * 6 * 6 / 2 + SCALAR_SIDE_SYMBOLS) / (3 * 48 * 48))
    assert run["snr_db"] == [0, 10]
    for m in ("psnr", "ssim", "ms_ssim", "lpips", "seconds_per_image"):
        assert len(run[m]) == 2 and all(isinstance(v, float) for v in run[m]), m
    assert run["psnr"][1] > run["psnr"][0]
    assert run["lpips"][1] < run["lpips"][0]
    assert run["n_images"] == 2
    # the per-image values behind each mean (6 significant digits), for 'table --ci' / 'compare'
    per = run["per_image"]
    assert len(per["images"]) == 2 and len(set(per["images"])) == 2
    for m in ("psnr", "ssim", "ms_ssim", "lpips"):
        assert [sum(v) / 2 for v in per[m]] == pytest.approx(run[m], rel=1e-5), m
    assert doc["meta"]["command"].startswith("semcom eval")
    assert not (tmp_path / "r.json.partial.jsonl").exists()


def test_eval_names_the_paired_comparison_it_allows(vae, tmp_path, capsys):
    """A sweep of several schemes ends with the 'semcom compare' command of its last two runs
    (quoted for the shell); that command runs on the file as printed."""
    import shlex

    out = tmp_path / "r.json"
    text = run_ok(capsys, "eval", "--scheme", "vae", "--scheme", "jpeg+capacity", "--cbr",
                  "1/12", "--dataset", "samples", "--crop", "48", "--limit", "2", "--snr", "0",
                  "10", "--metrics", "psnr", "--out", str(out))  # fmt: skip
    hint = text.strip().splitlines()[-1]
    assert hint.startswith("compare two runs: semcom compare ")
    argv = shlex.split(hint.split(": ", 1)[1])[1:]
    assert argv[argv.index("--scheme") + 1] == "jpeg+capacity@1/12"
    assert argv[argv.index("--against") + 1].startswith("vae@")  # its CBR at 48 px, with side info
    table = run_ok(capsys, *argv)
    assert "A = jpeg+capacity@1/12" in table and "| 10 | psnr |" in table


@pytest.mark.slow
def test_eval_resume_matches_uninterrupted(vae, tmp_path, capsys, monkeypatch):
    base = [*EVAL, "--limit", "2", "--metrics", "psnr", "ssim", "--quiet"]
    ref = tmp_path / "ref.json"
    run_ok(capsys, *base, "--out", str(ref))

    import semcom.eval.sweep as sweep

    real = sweep.safe_metrics
    calls = {"n": 0}

    def crash_on_second_image(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    out = tmp_path / "r.json"
    monkeypatch.setattr(sweep, "safe_metrics", crash_on_second_image)
    code = main([*base, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err
    partial = tmp_path / "r.json.partial.jsonl"
    assert partial.exists() and not out.exists()
    assert len(partial.read_text().splitlines()) == 2  # header + image 0

    calls["n"] = -100  # no more crashes; count the images computed on resume
    run_ok(capsys, *base, "--out", str(out))
    assert calls["n"] == -99  # only image 1 was sent again
    assert not partial.exists()
    assert _strip_volatile(json.loads(out.read_text())) == _strip_volatile(
        json.loads(ref.read_text())
    )


def test_merge_plot_bench_never_replace_a_file_they_did_not_write(tmp_path, capsys):
    """merge / plot / bench --json given an input photo (or any file of another kind) as their
    output refuse before any work and leave it alone; their own earlier outputs are replaced,
    and --force replaces anything."""
    r = tmp_path / "r.json"
    run_ok(capsys, "eval", "--scheme", "jpeg+capacity", "--cbr", "1/2", "--dataset", "samples",
           "--crop", "16", "--metrics", "psnr", "--limit", "1", "--snr", "10", "--quiet",
           "--out", str(r))  # fmt: skip
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(photo)
    before = photo.read_bytes()
    bench = ["bench", "--scheme", "jpeg+capacity", "--cbr", "1/2", "--dataset", "samples",
             "--crop", "16", "--limit", "1", "--snr", "10"]  # fmt: skip
    for argv, what in (
        (["merge", str(r), "--out", str(photo)], "is not a results JSON"),
        (["plot", str(r), "--out", str(photo)], "is not a figure"),
        ([*bench, "--json", str(photo)], "is not a 'semcom bench' JSON"),
    ):
        line = run_err(capsys, *argv)
        assert what in line and "--force" in line
        assert photo.read_bytes() == before
    for argv in (
        ["merge", str(r), "--out", str(tmp_path / "m.json")],
        ["plot", str(r), "--out", str(tmp_path / "f.png")],
        [*bench, "--json", str(tmp_path / "b.json")],
    ):
        run_ok(capsys, *argv)
        run_ok(capsys, *argv)  # its own output again: replaced without --force
    run_ok(capsys, "merge", str(r), "--out", str(photo), "--force")
    assert json.loads(photo.read_text())["runs"]


def test_eval_refuses_other_sweeps_partial(vae, tmp_path, capsys):
    out = tmp_path / "r.json"
    (tmp_path / "r.json.partial.jsonl").write_text('{"dataset": "kodak"}\n')
    line = run_err(capsys, *EVAL, "--limit", "1", "--out", str(out))
    assert "different sweep" in line
    # --force starts the partial file afresh (and only then): the sweep runs
    run_ok(capsys, *EVAL, "--limit", "1", "--out", str(out), "--force")
    assert json.loads(out.read_text())["runs"] and not (tmp_path / "r.json.partial.jsonl").exists()


def test_eval_partial_of_another_limit(vae, tmp_path, capsys, monkeypatch):
    """A partial sweep resumes under another --limit (the rows do not depend on it), also
    with a separation baseline: its fallback image is the mean of the whole data set."""
    import semcom.eval.sweep as sweep

    def crash(*a, **k):
        raise KeyboardInterrupt

    def partial_header(schemes, limit):
        out = tmp_path / f"{schemes[-1]}{limit}.json"
        argv = ["eval", *[w for s in schemes for w in ("--scheme", s)], "--cbr", "1/12",
                "--dataset", "samples", "--crop", "32", "--snr", "0", "--metrics", "psnr",
                "--limit", str(limit), "--quiet", "--out", str(out)]  # fmt: skip
        with monkeypatch.context() as m:
            m.setattr(sweep, "safe_metrics", crash)
            assert main(argv) == 130
        capsys.readouterr()
        return json.loads(out.with_name(out.name + ".partial.jsonl").read_text().splitlines()[0])

    a, b = partial_header(["jpeg+capacity"], 2), partial_header(["jpeg+capacity"], 3)
    assert a == b and a["fallback_mean_images"] == 6 and a["fallback"] == "mean image"
    assert partial_header(["vae"], 2) == partial_header(["vae"], 3)  # no fallback: resumable


def test_fallback_is_the_mean_image_or_the_mean_colour():
    """Separation baselines fall back to the mean of the data set's images: per pixel when they
    share one size (peers' "data set mean image"), else per colour channel."""
    import torch

    from semcom.separation.common import mean_fallback

    g = torch.Generator().manual_seed(0)
    same = [torch.rand(3, 4, 6, generator=g) for _ in range(5)]
    mean, kind = mean_fallback(same[i] for i in [0, 2, 4])
    assert kind == "mean image" and mean.shape == (3, 4, 6)
    torch.testing.assert_close(mean, (same[0] + same[2] + same[4]) / 3)
    mixed = [*same[:2], torch.rand(3, 6, 4, generator=g)]
    mean, kind = mean_fallback(mixed)
    assert kind == "mean colour" and mean.shape == (3, 1, 1)
    expect = torch.stack([x.mean(dim=(1, 2)) for x in mixed]).mean(0)
    torch.testing.assert_close(mean.flatten(), expect)
    with pytest.raises(ValueError, match="no images"):
        mean_fallback([])


def test_eval_fallback_is_the_whole_data_sets_mean(tmp_path, capsys):
    """Under --limit the fallback is still the mean of every image of the data set (as
    cropped), so an image's result does not depend on how many others are evaluated."""
    from semcom.data import get_dataset
    from semcom.metrics.psnr import psnr
    from semcom.separation.common import mean_fallback

    out = tmp_path / "fb.json"
    argv = ["eval", "--scheme", "jpeg+capacity", "--cbr", "1/12", "--dataset", "samples",
            "--crop", "32", "--snr", "-20", "--metrics", "psnr", "--limit", "1", "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    run = json.loads(out.read_text())["runs"][0]
    assert run["info"]["fallbacks"] == 1  # -20 dB: no JPEG fits
    ds = get_dataset("samples", crop=32, random_crop=False)
    mean, kind = mean_fallback(ds[i] for i in range(len(ds)))  # all 6, not the 1 evaluated
    assert kind == "mean image"
    expect = float(psnr(mean.unsqueeze(0), ds[0].unsqueeze(0)))
    assert run["psnr"][0] == pytest.approx(expect, abs=1e-4)
    alone = float(psnr(mean_fallback([ds[0]])[0].unsqueeze(0), ds[0].unsqueeze(0)))
    assert abs(alone - expect) > 1  # the mean of the evaluated image alone would differ


def test_the_data_sets_fallback_is_computed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    """dataset_fallback: mean_fallback over the whole set on the first call, then the data
    cache's copy (one file per data set, crop and files); an unreadable copy is recomputed."""
    import torch

    import semcom.separation.common as common
    from semcom.data import get_dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ds = get_dataset("samples", crop=32, random_crop=False)
    want, kind = common.mean_fallback(ds[i] for i in range(len(ds)))
    mean, got_kind = common.dataset_fallback("samples", ds, 32)
    assert torch.equal(mean, want) and got_kind == kind == "mean image"
    files = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(files) == 1 and "samples-crop32-" in files[0].name

    def boom(images):
        raise AssertionError("computed again")

    monkeypatch.setattr(common, "mean_fallback", boom)
    mean, got_kind = common.dataset_fallback("samples", ds, 32)
    assert torch.equal(mean, want) and got_kind == kind
    whole = get_dataset("samples")  # another crop: another file, computed
    with pytest.raises(AssertionError, match="computed again"):
        common.dataset_fallback("samples", whole, None)
    files[0].write_bytes(b"not a safetensors file")
    with pytest.raises(AssertionError, match="computed again"):
        common.dataset_fallback("samples", ds, 32)


def test_eval_missing_data_root(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SEMCOM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    line = run_err(capsys, "eval", "--dataset", "kodak", "--out", str(tmp_path / "r.json"))
    assert "SEMCOM_DATA" in line


def test_eval_bad_limit(tmp_path, capsys):
    line = run_err(capsys, *EVAL, "--limit", "0", "--out", str(tmp_path / "r.json"))
    assert "positive integer" in line


# ------------------------------------------------------------------ demo, lists
def test_demo(vae, tmp_path, capsys):
    out_dir = tmp_path / "demo"
    args = ["demo", "--out", str(out_dir), "--limit", "2", "--size", "48", "--snr", "0"]
    out = run_ok(capsys, *args, "--metrics", "psnr")
    grids = sorted(p.name for p in out_dir.glob("*_grid.png"))
    assert grids == ["astronaut_grid.png", "coffee_grid.png"]
    table = (out_dir / "table.txt").read_text()
    assert table.splitlines()[0].split()[:5] == ["image", "scheme", "cbr", "snr_db", "psnr"]
    rows = [ln.split() for ln in table.splitlines()[1:]]
    schemes = {r[1] for r in rows}
    # vae and jpeg+capacity need no trained checkpoint; the others join when shipped
    assert {"vae", "jpeg+capacity"} <= schemes <= set(cli.DEMO_SCHEMES)
    assert len(rows) == 2 * len(schemes)
    assert str(out_dir / "table.txt") in out and "astronaut_grid.png" in out
    assert _size(out_dir / "astronaut_vae_snr0dB.png") == (48, 48)


def test_schemes_and_datasets(capsys):
    out = run_ok(capsys, "schemes")
    lines = out.splitlines()
    rows = {ln.split()[0]: ln for ln in lines}
    assert "1/12" in rows["vae"]
    # a +dm receiver works out of the box at the CBRs of shipped denoisers, not at "any"
    for name in ("deepjscc+dm", "adjscc+dm"):
        assert rows[name].split()[1] == "1/16", rows[name]
    assert rows["jpeg+capacity"].split()[1] == "any"
    # columns: the description starts at one offset, also after a list of CBRs
    start = lines[0].index("what")
    assert rows["deepjscc"][start - 2 : start + 8] == "  DeepJSCC", rows["deepjscc"]
    assert all(ln[start - 1] == " " and ln[start] != " " for ln in lines)
    out = run_ok(capsys, "datasets")
    names = [ln.split()[0] for ln in out.splitlines()]
    assert names[:1] == ["kodak"] and "samples" in names and "cifar10-test" in names


def test_leftover_words_are_reported_by_their_command(capsys):
    """A word no option takes is reported by the subcommand given it (its own --help named),
    with a hint when it looks like a second value of a repeatable option."""
    line = run_err(capsys, "transmit", "x.png", "--cbr", "1/16", "1/12", "--out", "o")
    assert line.startswith("semcom transmit: error: unrecognized arguments: 1/12; ")
    assert "--cbr 1/16 --cbr 1/12" in line and "(see 'semcom transmit --help')" in line
    line = run_err(capsys, "zoo", "list", "extra")
    want = "semcom zoo list: error: unrecognized arguments: extra (see 'semcom zoo list --help')"
    assert line == want
    assert "required: {list,add}" in run_err(capsys, "zoo")


def test_usage_errors(capsys):
    for argv in ([], ["frobnicate"], ["transmit"]):
        assert _main_code(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "error:" in err


def test_list_options_given_twice_are_refused(tmp_path, capsys):
    """``--snr 0 --snr 10`` (as --scheme and --cbr are given) swept 10 dB alone, and
    ``--metrics psnr --metrics ssim`` computed SSIM alone, without a word: argparse keeps
    the last occurrence of an option."""
    r, out = str(tmp_path / "r.json"), str(tmp_path / "out")
    line = run_err(capsys, *EVAL[:-3], "--snr", "0", "--snr", "10", "--out", r)
    assert "--snr: given twice" in line and "--snr 0 10" in line
    for argv, shown in (
        (["transmit", "x.png", "--metrics", "psnr", "--metrics", "ssim", "--out", out],
         "--metrics psnr ssim"),
        (["table", r, "--metrics", "psnr", "--metrics", "lpips"], "--metrics psnr lpips"),
        (["compare", r, "--scheme", "a", "--against", "b", "--metrics", "psnr",
          "--metrics", "ssim"], "--metrics psnr ssim"),
        (["plot", r, "--anchors", "a.json", "--anchors", "b.json", "--out", out + ".png"],
         "--anchors a.json b.json"),
        (["experiment", "perturb", "--snr", "0", "--deltas", "0.1", "--deltas", "-0.5",
          "--limit", "1", "--crop", "16", "--out", out + ".json"], "--deltas 0.1 -0.5"),
    ):  # fmt: skip
        line = run_err(capsys, *argv)
        assert "given twice" in line and shown in line, line
    assert list(tmp_path.iterdir()) == []  # nothing ran
    # once, with several values: as before
    args = cli.build_parser().parse_args([*EVAL[:-3], "--snr", "0", "10", "--out", r])
    assert args.snr == [0.0, 10.0]


def test_version(capsys):
    assert _main_code(["--version"]) == 0
    assert "semcom 0.1.0" in capsys.readouterr().out


def test_helpers():
    assert cli_transmit._unique_stems(["a/x.png", "b/x.png", "y.jpg", "c/x.tif"]) == [
        "x",
        "x_2",
        "y",
        "x_3",
    ]
    # a made-up name never takes another file's own: a, a_2 (x/a.png), then a_2.png -> a_2_2
    assert cli_transmit._unique_stems(["x/a.png", "y/a.png", "a_2.png"]) == ["a", "a_2", "a_2_2"]
    assert cli_transmit._unique_stems(["a_2.png", "x/a.png", "y/a.png"]) == ["a_2", "a", "a_3"]


def test_run_names_carry_receiver_options():
    from semcom.schemes import run_name

    assert run_name("vae") == "vae"
    assert run_name("vae", fading="naive", steps=4) == "vae"  # options it does not take
    assert run_name("vae+dm") == "vae+dm"
    assert run_name("vae+dm", fading="naive", steps=4) == "vae+dm[steps=4,fading=naive]"
    # another network is another curve: named as given, the codec last
    assert (
        run_name(
            "adjscc+dm", codec_path="runs/c,1", denoiser_path="/x/d", estimator_path="e", steps=2
        )
        == "adjscc+dm[steps=2,denoiser=/x/d,snr_estimator=e,codec=runs/c,1]"
    )
    assert run_name("jpeg+capacity", matching="vp") == "jpeg+capacity"
    assert run_name("adjscc+dm", fading_samples=8, steps=16) == (
        "adjscc+dm[steps=16,fading_samples=8]"
    )


def test_fading_samples_reaches_the_receiver(capsys):
    """--fading-samples N: the receiver averages N runs; 0 is refused by the parser, and a
    scheme built with 0 by the factory."""
    from semcom.schemes import get_scheme

    link = get_scheme("adjscc+dm", cbr=1 / 16, fading="waterfill", fading_samples=3, steps=4)
    assert link.receiver.fading_samples == 3 and link.receiver.steps == 4
    with pytest.raises(ValueError, match="fading_samples must be an integer >= 1, got 0"):
        get_scheme("adjscc+dm", cbr=1 / 16, fading_samples=0)
    # naive matching runs once: averaging it, or an estimator without snr_source learned,
    # changed nothing and was dropped without a word
    with pytest.raises(ValueError, match="give fading='waterfill' or 'reference'"):
        get_scheme("adjscc+dm", cbr=1 / 16, fading_samples=3)
    with pytest.raises(ValueError, match="snr_source 'learned' only, got 'known'"):
        get_scheme("vae+dm", estimator_path="snr-estimator-vae-bsds")
    # nor did a quantile grid, which naive matching never steps through: the curve was
    # labelled deepjscc+dm[fading_grid=quantile] and was plain deepjscc+dm
    with pytest.raises(ValueError, match=r"fading_grid='quantile'.*give fading='waterfill'"):
        get_scheme("adjscc+dm", cbr=1 / 16, fading_grid="quantile", steps=16)
    link = get_scheme("adjscc+dm", cbr=1 / 16, fading="reference", fading_grid="quantile")
    assert link.receiver.fading_grid == "quantile"
    with pytest.raises(SystemExit):
        main(["eval", "--scheme", "adjscc+dm", "--fading-samples", "0", "--out", "x.json"])
    assert "--fading-samples" in capsys.readouterr().err


def test_one_step_water_filling_is_warned_of(tmp_path, capsys):
    """--fading waterfill|reference at K = 1 starts every element from the largest level:
    noise at any SNR (8 dB at 20 dB, below the codec alone), which ran without a word; kept
    runnable (a shipped results file records it), with a warning; K > 1 gets none."""
    base = ["eval", "--scheme", "vae+dm", "--channel", "rayleigh-fast", "--dataset",
            "samples", "--crop", "32", "--limit", "1", "--snr", "10", "--metrics", "psnr",
            "--quiet"]  # fmt: skip
    for fading in ("waterfill", "reference"):
        assert main([*base, "--fading", fading, "--out", str(tmp_path / f"{fading}.json")]) == 0
        err = capsys.readouterr().err
        assert f"warning: --fading {fading} with one step starts every element" in err
    assert main([*base, "--fading", "waterfill", "--steps", "2", "--out",
                 str(tmp_path / "k2.json")]) == 0  # fmt: skip
    assert "one step" not in capsys.readouterr().err


def test_mixed_pilot_accounting_is_said(tmp_path, capsys):
    """With estimated CSI a JSCC codec sends pilots on top of --cbr, a separation baseline
    within it: one sweep reported 49/768 and 1/16 for "--cbr 1/16" without a word."""
    base = ["eval", "--scheme", "jpeg+capacity", "--scheme", "deepjscc", "--cbr", "1/16",
            "--channel", "rayleigh-slow", "--dataset", "samples", "--crop", "64", "--limit",
            "1", "--snr", "10", "--metrics", "psnr", "--quiet"]  # fmt: skip
    assert main([*base, "--csi", "estimated", "--out", str(tmp_path / "e.json")]) == 0
    assert "the separation baselines (jpeg+capacity@1/16) within it" in capsys.readouterr().err
    runs = {r["scheme"]: r["cbr"] for r in json.loads((tmp_path / "e.json").read_text())["runs"]}
    assert runs["deepjscc"] == pytest.approx(49 / 768) and runs["jpeg+capacity"] == 1 / 16
    assert main([*base, "--out", str(tmp_path / "p.json")]) == 0  # perfect CSI: no pilots
    assert "pilots on top" not in capsys.readouterr().err


def test_the_pilot_note_needs_both_kinds_of_scheme(capsys):
    """The note on mixed pilot accounting is for a sweep of analog and separation schemes
    together: either kind alone (or perfect CSI) is counted one way and gets no note."""
    import torch

    for schemes, csi, said in ((["jpeg+capacity", "deepjscc"], "estimated", True),
                               (["jpeg+capacity"], "estimated", False),
                               (["deepjscc"], "estimated", False),
                               (["jpeg+capacity", "deepjscc"], "perfect", False)):  # fmt: skip
        words = [w for s in schemes for w in ("--scheme", s)]
        argv = ["eval", *words, "--cbr", "1/16", "--channel", "rayleigh-slow", "--csi", csi]
        args = cli.build_parser().parse_args([*argv, "--out", "x.json"])
        cli_build._build_schemes(args, torch.device("cpu"))
        assert ("pilots on top of --cbr" in capsys.readouterr().err) == said, (schemes, csi)


def test_an_unfinished_run_given_as_a_checkpoint_is_noted(tmp_path, capsys):
    """A training run folder whose card stopped before the end of its schedule gets a note
    naming the flag and where it stopped; a finished one, or a file, gets none."""
    run = tmp_path / "run"
    run.mkdir()
    card = {"epoch": 1, "step": 3, "train": {"epochs": 2}}
    (run / "card.json").write_text(json.dumps(card))
    cli_build._note_unfinished(str(run), "--codec")
    err = capsys.readouterr().err
    assert f"note: --codec {run}: a run that has not finished its schedule (epoch 1 of 2)" in err
    (run / "card.json").write_text(json.dumps({**card, "epoch": 2}))
    cli_build._note_unfinished(str(run), "--codec")
    cli_build._note_unfinished(None, "--codec")
    cli_build._note_unfinished(str(run / "card.json"), "--codec")
    assert capsys.readouterr().err == ""


def test_separation_fallbacks_are_counted_per_snr(tmp_path, capsys):
    """A separation baseline that shows its fallback image (nothing fit the budget) said so
    only in a sweep total (info.fallbacks): now per SNR in counts, and -v words it."""
    out = tmp_path / "f.json"
    argv = ["eval", "--scheme", "jpeg+capacity", "--cbr", "1/16", "--dataset", "samples",
            "--crop", "64", "--limit", "2", "--snr", "-10", "30", "--metrics", "psnr", "-v",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    err_out = "".join(capsys.readouterr())
    (run,) = json.loads(out.read_text())["runs"]
    assert run["counts"]["fallback"] == [2, 0]  # -10 dB: 96 bytes hold no JPEG; 30 dB: all fit
    assert run["info"]["fallbacks"] == 2
    assert "the data set's mean image shown instead (2 of 2)" in err_out


def test_get_scheme_checks_the_device_and_loaders_take_zoo_names():
    import torch

    from semcom.diffusion.checkpoint import load_denoiser
    from semcom.estimation.learned import load_snr_estimator
    from semcom.schemes import get_scheme

    with pytest.raises(ValueError, match="invalid --device 'gpu'"):
        get_scheme("jpeg+capacity", "1/16", device="gpu")
    if not torch.cuda.is_available():  # accepted without a word before
        with pytest.raises(ValueError, match="no CUDA device"):
            get_scheme("jpeg+capacity", "1/16", device="cuda")
    assert load_snr_estimator("snr-estimator-deepjscc-c6-bsds", codec="deepjscc") is not None
    with pytest.raises(ValueError, match="neither a file, a run folder nor a zoo name"):
        load_denoiser("no-such-denoiser")


def test_eval_spread_takes_evenly_spaced_images(tmp_path, capsys):
    from semcom.data import get_dataset

    n_all = len(get_dataset("samples"))
    out = tmp_path / "r.json"
    run_ok(capsys, "eval", "--scheme", "jpeg+capacity", "--cbr", "1/12", "--dataset", "samples",
           "--limit", "2", "--spread", "--crop", "32", "--snr", "10", "--metrics", "psnr",
           "--out", str(out))  # fmt: skip
    doc = json.loads(out.read_text())
    assert doc["runs"][0]["n_images"] == 2 and doc["meta"]["spread"] is True
    first = tmp_path / "f.json"
    run_ok(capsys, "eval", "--scheme", "jpeg+capacity", "--cbr", "1/12", "--dataset", "samples",
           "--limit", "2", "--crop", "32", "--snr", "10", "--metrics", "psnr",
           "--out", str(first))  # fmt: skip
    assert n_all > 3  # images 0 and n/2 differ from images 0 and 1
    assert json.loads(first.read_text())["runs"][0]["psnr"] != doc["runs"][0]["psnr"]


def test_eval_records_weights_and_refuses_a_partial_of_other_weights(tmp_path, capsys, monkeypatch):
    """Each curve names the fingerprints of the networks it ran (equal to the zoo cards'), and
    a sweep interrupted before a checkpoint changed is not resumed with the new weights."""
    from semcom.diffusion.checkpoint import find_denoiser
    from semcom.fingerprint import codec_fingerprint
    from semcom.zoo import find_checkpoint, load_codec

    argv = [
        *["eval", "--scheme", "deepjscc", "--scheme", "deepjscc+dm", "--cbr", "1/16"],
        *["--dataset", "samples", "--crop", "64", "--limit", "1", "--snr", "0", "--quiet"],
    ]
    out = tmp_path / "r.json"
    run_ok(capsys, *argv, "--metrics", "psnr", "--out", str(out))
    runs = {r["scheme"]: r for r in json.loads(out.read_text())["runs"]}
    fp = codec_fingerprint(load_codec("deepjscc", find_checkpoint("deepjscc", 1 / 16).cbr))
    assert runs["deepjscc"]["weights"] == {"codec": fp}
    den = find_denoiser("deepjscc", "1/16")
    assert runs["deepjscc+dm"]["weights"]["codec"] == den.card["codec"]["fingerprint"] == fp
    assert set(runs["deepjscc+dm"]["weights"]) == {"codec", "denoiser"}

    import semcom.eval.sweep as sweep

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "safe_metrics", interrupt)
    out2 = tmp_path / "s.json"
    assert main([*argv, "--metrics", "psnr", "--out", str(out2)]) == 130
    partial = tmp_path / "s.json.partial.jsonl"
    header = json.loads(partial.read_text().splitlines()[0])
    assert header["weights"]["deepjscc@1/16"] == {"codec": fp}
    header["weights"]["deepjscc@1/16"]["codec"] = "0" * 12  # as if retrained since
    partial.write_text(json.dumps(header) + "\n")
    capsys.readouterr()
    line = run_err(capsys, *argv, "--metrics", "psnr", "--out", str(out2))
    assert "different sweep" in line and "weights" in line
    # a sweep begun on another device drew other noise (CUDA's generator is not the CPU's)
    assert header["device"] == "cpu"
    header["weights"]["deepjscc@1/16"]["codec"] = fp
    header["device"] = "cuda"
    partial.write_text(json.dumps(header) + "\n")
    line = run_err(capsys, *argv, "--metrics", "psnr", "--out", str(out2))
    assert "(settings differ: device)" in line


def test_eval_scores_the_learned_snr_estimate(tmp_path, capsys):
    """--snr-source learned: the results hold the estimate's RMSE and bias per SNR, the
    printout shows the RMSE, and the same sweep with the known SNR carries neither."""
    argv = [
        *["eval", "--scheme", "deepjscc+dm", "--cbr", "1/16", "--dataset", "samples"],
        *["--crop", "128", "--limit", "2", "--snr", "0", "15", "--metrics", "psnr"],
    ]
    out = tmp_path / "r.json"
    text = run_ok(capsys, *argv, "--snr-source", "learned", "--out", str(out))
    (run,) = json.loads(out.read_text())["runs"]
    rmse, bias = run["snr_est_rmse_db"], run["snr_est_bias_db"]
    assert len(rmse) == len(bias) == 2
    # the shipped estimator is within a few dB on two sample crops (0.95 dB RMS on bsds500-val)
    assert all(0 < r < 4 and abs(b) <= r for r, b in zip(rmse, bias, strict=True)), run
    assert text.count("SNR estimate RMSE") == 2
    known = tmp_path / "k.json"
    text = run_ok(capsys, *argv, "--out", str(known))
    (run,) = json.loads(known.read_text())["runs"]
    assert "snr_est_rmse_db" not in run and "SNR estimate" not in text


def test_estimated_snr_under_fast_fading_is_refused(inputs, tmp_path, capsys):
    """A per-image SNR estimate would throw away the per-symbol noise levels of fast fading:
    refused in one line before anything runs (transmit and eval)."""
    for source in ("moment", "learned"):
        line = run_err(
            capsys, "transmit", str(inputs["small"]), "--scheme", "vae+dm", "--channel",
            "rayleigh-fast", "--snr-source", source, "--out", str(tmp_path / source),
        )  # fmt: skip
        assert f"--snr-source {source}" in line and "rayleigh-fast" in line
        assert not (tmp_path / source).exists()
    line = run_err(capsys, *EVAL, "--scheme", "vae+dm", "--channel", "rayleigh-fast",
                   "--snr-source", "moment", "--out", str(tmp_path / "r.json"))  # fmt: skip
    assert "--snr-source known" in line and not (tmp_path / "r.json").exists()
    # vae alone has no diffusion receiver: told that the option is not its, not about one
    line = run_err(capsys, *EVAL, "--channel", "rayleigh-fast", "--snr-source", "moment",
                   "--out", str(tmp_path / "r.json"))  # fmt: skip
    assert "--snr-source applies to the schemes" in line and "none of them was asked" in line


def test_separation_without_cbr_says_its_default(tmp_path, capsys):
    """A separation baseline takes any CBR and runs at 1/16 without --cbr (a JSCC codec asks
    for one): said in a note, not silently; with --cbr no note."""
    argv = ["eval", "--scheme", "jpeg+capacity", "--dataset", "samples", "--crop", "16",
            "--limit", "1", "--snr", "10", "--metrics", "psnr", "--quiet"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a.json")]) == 0
    err = capsys.readouterr().err
    assert "jpeg+capacity runs at its default CBR 1/16 (no --cbr given)" in err
    (run,) = json.loads((tmp_path / "a.json").read_text())["runs"]
    assert run["cbr"] == pytest.approx(1 / 16, rel=1e-3)
    assert main([*argv, "--cbr", "1/8", "--out", str(tmp_path / "b.json")]) == 0
    assert "default CBR" not in capsys.readouterr().err


def test_transmit_shows_the_snr_estimate_error(inputs, tmp_path, capsys):
    """semcom transmit: a receiver that estimates the SNR reports its error per image (table
    column and JSON key), one with the known SNR reports none."""
    argv = ["transmit", str(inputs["small"]), "--scheme", "deepjscc+dm", "--scheme", "deepjscc"]
    argv += ["--cbr", "1/16", "--snr", "0", "--metrics", "psnr", "--snr-source", "learned"]
    text = run_ok(capsys, *argv, "--out", str(tmp_path / "a"))
    head, dm, plain = text.splitlines()[:3]
    assert head.split()[-1] == "snr_error_db"
    # (a 32 x 32 image is an 8 x 8 latent: far too small for an accurate estimate)
    assert 0 < abs(float(dm.split()[-1])) < 20 and plain.split()[-1] == "-"
    rows = json.loads(run_ok(capsys, *argv, "--json", "--out", str(tmp_path / "b")))["results"]
    assert [("snr_error_db" in r) for r in rows] == [True, False]
    assert float(dm.split()[-1]) == pytest.approx(rows[0]["snr_error_db"], abs=1e-4)
    text = run_ok(capsys, *argv[:-2], "--out", str(tmp_path / "c"))
    assert "snr_error_db" not in text


def test_get_scheme_refuses_an_option_the_scheme_does_not_take():
    """A typo, or a receiver option given to a plain scheme, would change nothing: refused with
    the options the scheme takes (the CLI hands each scheme only its own)."""
    from semcom.schemes import get_scheme

    with pytest.raises(ValueError, match=r"'vae\+dm' does not take option\(s\) stpes.*steps"):
        get_scheme("vae+dm", stpes=4)
    with pytest.raises(ValueError, match=r"'vae' does not take option\(s\) snr_source, steps"):
        get_scheme("vae", steps=4, snr_source="moment")
    # the CLI's name of a path option points to get_scheme's
    with pytest.raises(ValueError, match=r"codec, snr_estimator .*snr_estimator is estimator_path, "
                       "codec is codec_path"):  # fmt: skip
        get_scheme("deepjscc+dm", "1/16", snr_estimator="x", codec="y")
    assert get_scheme("vae", steps=None).name == "vae"  # None: the default, always accepted
    assert get_scheme("adjscc+dm", cbr=1 / 16).receiver.fading == "naive"  # the default


def test_get_scheme_docstring_names_every_option():
    """help(get_scheme) is where a notebook user looks for the options: every option a
    registered scheme takes is named there."""
    from semcom.schemes import get_scheme, list_schemes

    doc = get_scheme.__doc__
    missing = {o for s in list_schemes() for o in s.options if f"``{o}``" not in doc}
    assert not missing, missing


def test_results_are_not_overwritten_by_another_command(tmp_path, capsys):
    """``--out`` of a measuring command never replaces another command's results unless
    ``--force`` (hours of measurements lost to a reused name); a re-run of the very command a
    file records replaces it (reproducing a shipped results file needs no flag)."""
    out = tmp_path / "r.json"
    base = ["eval", "--scheme", "jpeg+capacity", "--cbr", "1/2", "--dataset", "samples",
            "--crop", "16", "--metrics", "psnr", "--limit", "1", "--quiet",
            "--out", str(out)]  # fmt: skip
    run_ok(capsys, *base, "--snr", "10")
    first = out.read_text()
    line = run_err(capsys, *base, "--snr", "20")
    assert "already holds the results of `semcom eval --scheme jpeg+capacity" in line
    assert "--snr 10`" in line and "--force" in line
    assert out.read_text() == first  # untouched
    run_ok(capsys, *base, "--snr", "10")  # the same command again: a reproduction
    assert json.loads(out.read_text())["meta"]["command"] == json.loads(first)["meta"]["command"]
    # ... also with its options in another order, another spelling of --out's path and other
    # output noise; one option that changes the measurement (--seed) is another command
    other_path = os.path.relpath(out)
    same = ["eval", "--dataset", "samples", "--scheme", "jpeg+capacity", "--cbr", "1/2",
            "--limit", "1", "--crop", "16", "--snr", "10", "--metrics", "psnr", "-v",
            "--out", other_path]  # fmt: skip
    run_ok(capsys, *same)
    assert json.loads(out.read_text())["meta"]["command"].endswith(f"--out {other_path}")
    assert "already holds" in run_err(capsys, *same, "--seed", "1")
    run_ok(capsys, *base, "--snr", "10")
    run_ok(capsys, *base, "--snr", "20", "--force")
    assert json.loads(out.read_text())["runs"][0]["snr_db"] == [20.0]
    # a file semcom did not write, and the experiments, before any work
    notes = tmp_path / "notes.json"
    notes.write_text("my notes")
    line = run_err(capsys, *base[:-1], str(notes), "--snr", "10")
    assert "holds a file that is not semcom's results" in line
    assert notes.read_text() == "my notes"
    for exp in (["experiment", "ood"], ["experiment", "perturb"]):
        line = run_err(capsys, *exp, "--out", str(out))
        assert "already holds the results of `semcom eval" in line


def test_pilots_that_outnumber_the_data_are_remarked_once_per_run(tmp_path, capsys):
    """--pilots far above the latent's size: the analog scheme's CBR is mostly pilots, the
    separation scheme sends nothing; each is said once per run (two images, one warning each),
    in transmit and in eval alike, and a modest pilot count is not remarked on."""
    imgs = []
    for k in range(2):
        p = tmp_path / f"i{k}.png"
        Image.new("RGB", (32, 32), (40 * k, 90, 160)).save(p)
        imgs.append(str(p))
    base = ["--scheme", "deepjscc", "--scheme", "jpeg+capacity", "--cbr", "1/16", "--snr", "5",
            "--channel", "rayleigh-slow", "--csi", "estimated"]  # fmt: skip
    assert main(["transmit", *imgs, *base, "--pilots", "5000", "--out", str(tmp_path / "t")]) == 0
    err = capsys.readouterr().err
    assert err.count("deepjscc@1/16: the pilots take 5000 of the 5192 channel uses (data 192)") == 1
    assert err.count("jpeg+capacity@1/16: no data is sent: the pilots need more") == 1
    assert main(["transmit", *imgs, *base, "--pilots", "4", "--out", str(tmp_path / "u")]) == 0
    assert "pilots take" not in capsys.readouterr().err
    out = tmp_path / "e.json"
    argv = ["eval", "--dataset", "kodak", "--limit", "1", "--crop", "32", *base, "--pilots",
            "5000", "--metrics", "psnr", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("deepjscc@1/16: the pilots take 5000 of the 5192") == 1


def test_fixed_cbr_only_for_schemes_of_a_single_cbr() -> None:
    """``fixed_cbr``: the TAEF2 schemes' 1/12; None for schemes shipped at several CBRs, for
    those taking any CBR and for unknown names."""
    from semcom.codecs.jscc import cbr_for_channels
    from semcom.schemes import fixed_cbr, list_schemes

    assert fixed_cbr("vae") == pytest.approx(1 / 12)
    specs = {s.name: s for s in list_schemes()}
    assert len(specs["deepjscc"].cbrs) > 1 and cbr_for_channels(6) in specs["deepjscc"].cbrs
    for name in ("deepjscc", "adjscc", "jpeg+capacity", "no-such-scheme"):
        assert fixed_cbr(name) is None, name


def test_get_scheme_takes_the_cbr_as_text_for_every_scheme() -> None:
    """``cbr="1/12"`` is parsed before the factory sees it: the fixed-CBR vae accepts its own
    CBR as text and refuses another one with its message (not a TypeError on a string)."""
    from semcom.schemes import get_scheme

    assert get_scheme("vae", "1/12").name == "vae"
    with pytest.raises(ValueError, match="fixed CBR of 1/12"):
        get_scheme("vae", "1/16")


def test_option_values_at_their_bounds(tmp_path, capsys):
    """--snr takes exactly +-SNR_LIMIT_DB; a confidence level is strictly inside (0, 1)."""
    from semcom.channels.models import SNR_LIMIT_DB

    assert cli_args._snr_value(f"{SNR_LIMIT_DB:g}") == SNR_LIMIT_DB
    assert cli_args._snr_value(f"-{SNR_LIMIT_DB:g}") == -SNR_LIMIT_DB
    assert cli_args._level_value("0.5") == 0.5
    res = tmp_path / "r.json"  # never read: the level is refused first
    for argv in (["table", str(res), "--ci", "1"], ["compare", str(res), "--scheme", "a",
                 "--against", "b", "--level", "0"]):  # fmt: skip
        line = run_err(capsys, *argv)
        assert "expected a number in (0, 1)" in line


def test_output_kinds_and_gray_images_are_told_apart(tmp_path):
    """An experiment's results (a top-level command, no runs) are semcom's results; a list
    with a row of no 'total' is not a bench file; an image gray only in two channels is
    colour."""
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps({"command": "experiment ood --out exp.json"}))
    assert cli_outputs._is_results(exp)
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps([{"total": 1.0}, {"image": "a"}]))
    assert not cli_outputs._is_bench(mixed)
    import torch

    x = torch.rand(3, 4, 4)
    x[1] = x[0]
    assert not cli_transmit._is_gray(x)
    x[2] = x[0]
    assert cli_transmit._is_gray(x)


def _scheme_args(**kw):
    import argparse

    return argparse.Namespace(**{"cbr": None, "channel": "awgn", **kw})


def test_one_run_per_scheme_and_cbr(capsys):
    """A CBR given twice (1/2 and 0.5) is one run."""
    import torch

    keys = [k for k, _ in cli_build._build_schemes(
        _scheme_args(scheme=["jpeg+capacity"], cbr=["1/2", "0.5"]), torch.device("cpu")
    )]  # fmt: skip
    assert [k.label for k in keys] == ["jpeg+capacity@1/2"]


def test_the_demo_gets_no_note_on_its_own_cbr(vae, capsys):
    """The demo's own --cbr draws no note about a fixed-CBR scheme; a user's --cbr does."""
    import torch

    argv = {"scheme": ["vae", "jpeg+capacity"], "cbr": ["1/16"]}
    cli_build._build_schemes(_scheme_args(**argv, cbr_given=False), torch.device("cpu"))
    assert "fixed CBR" not in capsys.readouterr().err
    cli_build._build_schemes(_scheme_args(**argv), torch.device("cpu"))
    assert "semcom: note: vae has a fixed CBR of 1/12" in capsys.readouterr().err


def test_fit_bounds_the_longer_side():
    import torch

    assert cli_transmit._fit(torch.rand(3, 40, 20), 10).shape == (3, 10, 5)
    assert cli_transmit._fit(torch.rand(3, 8, 6), 10).shape == (3, 8, 6)  # never upscaled


def test_experiments_refuse_options_that_measure_nothing(tmp_path, capsys):
    out = str(tmp_path / "x.json")
    line = run_err(capsys, "experiment", "perturb", "--scheme", "vae+dm", "--scheme",
                   "deepjscc+dm", "--out", out)  # fmt: skip
    assert "experiment perturb takes one --scheme" in line
    # (cheap options: the mutant without the check would run the experiment)
    line = run_err(capsys, "experiment", "ood", "--scheme", "jpeg+capacity", "--cbr", "1/2",
                   "--in-data", "samples", "--out-data", "samples", "--limit", "1", "--crop",
                   "16", "--snr", "10", "--metrics", "psnr", "--quiet", "--out", out)  # fmt: skip
    assert "--in-data and --out-data must differ" in line
    assert not Path(out).exists()


def test_reproduce_refuses_bad_options_and_subsets_it_cannot_compare(tmp_path, capsys):
    res = tmp_path / "r.json"
    assert main(["reproduce", str(res), "--tolerance", "nan"]) == 2
    assert "--tolerance must be >= 0, got nan" in capsys.readouterr().err
    keep = tmp_path / "keep"
    keep.write_text("a file\n")
    assert main(["reproduce", str(res), "--keep", str(keep)]) == 2
    assert "is a file: give a folder" in capsys.readouterr().err
    run_ok(capsys, "eval", "--scheme", "jpeg+capacity", "--cbr", "1/2", "--dataset", "samples",
           "--crop", "16", "--metrics", "psnr", "--limit", "1", "--snr", "10", "--quiet",
           "--out", str(res))  # fmt: skip
    # a recorded --limit 1 stays 1 under a larger --limit
    assert main(["reproduce", str(res), "--limit", "2", "--quiet"]) == 0
    assert "1 of 1 images re-run" in capsys.readouterr().out
    doc = json.loads(res.read_text())
    for run in doc["runs"]:
        run.pop("per_image")
    res.write_text(json.dumps(doc))
    assert main(["reproduce", str(res), "--limit", "1", "--quiet"]) == 2
    assert "keeps no per-image values" in capsys.readouterr().err


def test_exit_codes_of_a_diverged_run_and_a_bad_value(capsys, monkeypatch):
    """A diverged computation (FloatingPointError) exits 1, not as a usage error; a CBR is
    checked as the options are read, before any input file."""

    def diverged(args):
        raise FloatingPointError("loss is NaN at step 3")

    monkeypatch.setattr(cli_parser, "cmd_schemes", diverged)
    assert main(["schemes"]) == 1
    assert capsys.readouterr().err == "semcom: error: loss is NaN at step 3\n"
    line = run_err(capsys, "transmit", "missing.png", "--cbr", "abc", "--out", "o")
    assert line.startswith("semcom transmit: error: argument --cbr: invalid CBR 'abc'")


@pytest.mark.parametrize("zoo", ["shipped", "another denoiser", "corrupt card"])
def test_schemes_lists_without_torch_what_the_registry_holds(tmp_path, zoo):
    """``semcom schemes`` lists the built-in schemes from semcom.names and the zoo without
    importing torch: the same rows (names, CBRs, descriptions) as the registry's, also with a
    user zoo that adds a denoiser at another CBR or holds a corrupt card (CBRs "any")."""
    from semcom.zoo import ZOO_DIR

    env = dict(os.environ)
    if zoo != "shipped":
        env["SEMCOM_ZOO"] = str(tmp_path)
        card = json.loads((Path(ZOO_DIR) / "denoiser-adjscc-c6-bsds.json").read_text())
        if zoo == "another denoiser":
            card["name"], card["codec"]["cbr"] = "denoiser-adjscc-other", "1/6"
        else:
            del card["model"]
        (tmp_path / "denoiser-adjscc-other.json").write_text(json.dumps(card))
    code = (
        "import sys\n"
        "from semcom.cli.listing import builtin_rows, registry_rows\n"
        "light = builtin_rows()\n"
        "assert 'torch' not in sys.modules\n"
        "print(repr(light))\n"
        "print(repr(registry_rows()))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert r.returncode == 0, r.stderr
    light, registered = r.stdout.splitlines()
    assert light == registered
    rows = {row[0]: row[1] for row in ast.literal_eval(light)}
    expected = {"shipped": "1/16", "another denoiser": "1/6, 1/16", "corrupt card": "any"}
    assert rows["adjscc+dm"] == expected[zoo] and rows["vae+dm"] == "1/12"


# ------------------------------------------------------------------ schemes of your own
def test_a_scheme_of_your_own_runs_in_schemes_and_eval(identity_codec, tmp_path, capsys):
    """README "Your own pieces": a scheme added with ``register_scheme`` is listed by
    ``semcom schemes`` and swept by ``semcom eval`` run in the same process
    (``semcom.cli.main``); its results file is valid."""
    import semcom.schemes
    from semcom.eval.plot import load_results
    from semcom.link import AnalogLink
    from semcom.schemes import SchemeSpec, list_schemes, register_scheme

    list_schemes()  # the built-ins first, then ours, in a registry undone after the test
    mp = pytest.MonkeyPatch()
    mp.setattr(semcom.schemes, "_REGISTRY", dict(semcom.schemes._REGISTRY))
    try:
        register_scheme(
            SchemeSpec("mine", "my identity codec", lambda cbr, dev: AnalogLink(identity_codec()))
        )
        assert main(["schemes"]) == 0
        assert re.search(r"^mine +any +my identity codec$", capsys.readouterr().out, re.M)
        out = tmp_path / "r.json"
        argv = ["eval", "--scheme", "mine", "--dataset", "samples", "--limit", "1", "--crop",
                "16", "--snr", "0", "--metrics", "psnr", "--out", str(out), "--quiet"]  # fmt: skip
        assert main(argv) == 0
        (run,) = load_results(out)["runs"]
        assert run["scheme"] == "mine" and run["cbr"] == 0.5  # 3 reals per pixel: 1.5 uses
    finally:
        mp.undo()


@pytest.mark.parametrize("name", ["my@1/16", "mine[x]", "my scheme", "a,b", ""])
def test_register_scheme_refuses_a_name_results_cannot_label(name):
    from semcom.schemes import SchemeSpec, register_scheme

    with pytest.raises(ValueError, match="must be a non-empty word"):
        register_scheme(SchemeSpec(name, "x", lambda cbr, dev: None))


def _fake_dist(root: Path, name: str, entry_points: str) -> None:
    """An installed distribution ``name`` on ``root`` (a path entry) with ``entry_points``."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_an_installed_plugin_adds_its_scheme_to_the_shell_command(tmp_path):
    """A package's ``semcom.schemes`` entry point registers its scheme for the ``semcom``
    shell command (schemes, eval); a broken plugin is warned of, the built-ins still work."""
    (tmp_path / "my_plugin.py").write_text(
        "from semcom.schemes import SchemeSpec, register_scheme\n"
        "def register():\n"
        "    from semcom.schemes import get_scheme\n"
        "    register_scheme(SchemeSpec('mine', 'my own scheme', "
        "lambda cbr, dev: get_scheme('jpeg+capacity', cbr, dev)))\n"
    )
    (tmp_path / "bad_plugin.py").write_text("raise ImportError('no such thing')\n")
    (tmp_path / "evil_plugin.py").write_text(  # webp under jpeg's name: not taken
        "from semcom.schemes import SchemeSpec, register_scheme\n"
        "register_scheme(SchemeSpec('jpeg+capacity', 'not jpeg', lambda cbr, dev: None))\n"
    )
    _fake_dist(tmp_path, "my_plugin", "[semcom.schemes]\nmine = my_plugin:register\n")
    _fake_dist(tmp_path, "bad_plugin", "[semcom.schemes]\nbad = bad_plugin\n")
    _fake_dist(tmp_path, "evil_plugin", "[semcom.schemes]\nevil = evil_plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}

    def semcom(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "semcom.cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)

    r = semcom("schemes")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^mine .*my own scheme", r.stdout, re.M) and "deepjscc" in r.stdout
    assert "plugin 'bad'" in r.stderr and "no such thing" in r.stderr
    assert "plugin 'evil' registers the built-in scheme name(s) jpeg+capacity: ignored" in r.stderr
    assert "not jpeg" not in r.stdout
    # one's own registration in the process wins over a plugin's of that name, silently
    code = ("from semcom.schemes import SchemeSpec, get_scheme, register_scheme\n"
            "register_scheme(SchemeSpec('mine', 'user', lambda cbr, dev: 'user'))\n"
            "assert get_scheme('mine') == 'user'\n")  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "mine" not in r.stderr
    out = tmp_path / "r.json"
    argv = ["eval", "--scheme", "mine", "--cbr", "1/4", "--dataset", "samples", "--crop", "32",
            "--limit", "1", "--snr", "10", "--metrics", "psnr", "--quiet",
            "--out", str(out)]  # fmt: skip
    r = semcom(*argv)
    assert r.returncode == 0, r.stderr
    assert [run["scheme"] for run in json.loads(out.read_text())["runs"]] == ["mine"]


def test_plugins_load_once_and_a_failing_one_leaves_no_scheme_behind(tmp_path):
    """Each plugin's entry point runs once per process (not again at every ``list_schemes`` /
    ``get_scheme``, re-registering and re-warning), and one that fails after registering a
    scheme leaves none of it in the registry."""
    (tmp_path / "counted_plugin.py").write_text(
        "from semcom.schemes import SchemeSpec, register_scheme\n"
        "calls = []\n"
        "def register():\n"
        "    calls.append(1)\n"
        "    register_scheme(SchemeSpec('counted', 'x', lambda cbr, dev: 'counted'))\n"
    )
    (tmp_path / "half_plugin.py").write_text(
        "from semcom.schemes import SchemeSpec, register_scheme\n"
        "register_scheme(SchemeSpec('half', 'x', lambda cbr, dev: None))\n"
        "raise RuntimeError('broken after registering')\n"
    )
    _fake_dist(tmp_path, "counted_plugin", "[semcom.schemes]\ncounted = counted_plugin:register\n")
    _fake_dist(tmp_path, "half_plugin", "[semcom.schemes]\nhalf = half_plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    code = (
        "import warnings\n"
        "from semcom.schemes import get_scheme, list_schemes\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    names = [s.name for s in list_schemes()]\n"
        "    list_schemes()\n"
        "    assert get_scheme('counted') == 'counted'\n"
        "import counted_plugin\n"
        "assert counted_plugin.calls == [1], counted_plugin.calls\n"
        "assert 'counted' in names and 'half' not in names, names\n"
        "assert [str(x.message).split(':')[0] for x in w] == [\n"
        "    \"semcom plugin 'half' (half_plugin) failed to load and is skipped\"], w\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 0, r.stderr


def test_a_scheme_registered_before_the_builtins_load_replaces_theirs(tmp_path):
    """Registering ``vae`` first thing in a session (before anything listed the schemes) replaces
    the built-in one, as registering it later does; it was silently put back by the built-ins
    when they loaded on the first ``get_scheme``."""
    code = (
        "from semcom.schemes import SchemeSpec, get_scheme, list_schemes, register_scheme\n"
        "register_scheme(SchemeSpec('vae', 'my vae', lambda cbr, dev: 'mine'))\n"
        "assert get_scheme('vae') == 'mine', get_scheme('vae')\n"
        "assert [s.description for s in list_schemes() if s.name == 'vae'] == ['my vae']\n"
        "assert 'deepjscc' in [s.name for s in list_schemes()]\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr


def test_data_set_names_are_recorded_in_lower_case(tmp_path, capsys):
    """``--dataset SAMPLES`` ran on samples but recorded "SAMPLES": merging it with a samples
    file was refused as another data set."""
    argv = ["eval", "--scheme", "jpeg+capacity", "--cbr", "1/4", "--crop", "32", "--limit", "1",
            "--snr", "10", "--metrics", "psnr", "--quiet"]  # fmt: skip
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run_ok(capsys, *argv, "--dataset", "SAMPLES", "--out", str(a))
    run_ok(capsys, *argv, "--dataset", "samples", "--seed", "0", "--out", str(b))
    assert json.loads(a.read_text())["dataset"]["name"] == "samples"
    run_ok(capsys, "merge", str(a), str(b), "--out", str(tmp_path / "m.json"))


def test_eval_and_training_take_a_folder_of_images(tmp_path, capsys, monkeypatch):
    """--dataset / --data name a folder of one's own (they were 'unknown data set'): results
    record its absolute path, a separation baseline's fallback is cached under a safe name,
    a denoiser trains on its latents and its card records the folder."""
    photos = tmp_path / "my photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    run_ok(capsys, "eval", "--scheme", "jpeg+capacity", "--scheme", "deepjscc", "--cbr", "1/16",
           "--dataset", "my photos", "--snr", "-10", "10", "--metrics", "psnr", "--quiet",
           "--out", str(out))  # fmt: skip
    doc = json.loads(out.read_text())
    assert doc["dataset"]["name"] == str(photos.resolve())
    assert [r["n_images"] for r in doc["runs"]] == [3, 3]
    assert len(list((tmp_path / "cache").rglob("fallback/*_my_photos-whole-*.safetensors"))) == 1
    # the recorded command names the folder as the data-set block does: reproduce from elsewhere
    assert f"--dataset {shlex.quote(str(photos.resolve()))} " in doc["meta"]["command"]
    monkeypatch.chdir(photos)
    run_ok(capsys, "reproduce", str(out), "--limit", "1")
    monkeypatch.chdir(tmp_path)
    run_ok(capsys, "train", "denoiser", "--codec", "deepjscc", "--cbr", "1/16", "--data",
           "my photos", "--val-data", "none", "--crop", "4", "--width", "8", "--batch-size", "2",
           "--max-steps", "1", "--epochs", "1", "--quiet",
           "--out", str(tmp_path / "den"))  # fmt: skip
    card = json.loads((tmp_path / "den" / "card.json").read_text())
    assert card["data"]["train"] == str(photos.resolve())
    (tmp_path / "Samples").mkdir()  # a folder named like a named set: the set, with a note
    assert main(["eval", "--dataset", "Samples", "--scheme", "nope", "--out", "x.json"]) == 2
    err = capsys.readouterr().err
    assert "note: 'Samples' is the named data set 'samples', not the folder" in err
    assert "'./Samples' for the folder" in err
    assert "unknown data set 'nothing'" in run_err(capsys, "eval", "--dataset", "nothing",
                                                   "--out", str(tmp_path / "x.json"))  # fmt: skip
