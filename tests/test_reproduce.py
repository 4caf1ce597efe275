"""`semcom reproduce`: re-running a results file's recorded `semcom eval` and comparing."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from semcom.cli import main
from semcom.eval.reproduce import (
    TOLERANCE,
    TOLERANCE_DB,
    Check,
    compare_documents,
    compare_results,
    format_checks,
    recorded_eval_commands,
    tolerance_for,
    weight_changes,
)

REPO = Path(__file__).resolve().parents[1]


def _doc(psnr_per_image: list[list[float]], images=("a", "b", "c"), per_image=True) -> dict:
    """A results document with one run: per-image PSNR [SNR][image] and LPIPS beside it."""
    lp = [[0.5 - 0.01 * v for v in row] for row in psnr_per_image]
    run = {
        "scheme": "deepjscc",
        "cbr": 0.0625,
        "cbr_str": "1/16",
        "n_images": len(images),
        "snr_db": [0.0, 10.0],
        "psnr": [sum(r) / len(r) for r in psnr_per_image],
        "lpips": [sum(r) / len(r) for r in lp],
        "seconds_per_image": [0.1, 0.1],
        "weights": {"codec": "111ed5e4f24a"},
    }
    if per_image:
        run["per_image"] = {"images": list(images), "psnr": psnr_per_image, "lpips": lp}
    return {"runs": [run], "meta": {"command": "semcom eval --scheme deepjscc --out r.json"}}


STORED = _doc([[20.0, 21.0, 22.0], [30.0, 31.0, 32.0]])


def _by_metric(checks):
    return {c.metric: c for c in checks}


def test_identical_results_are_the_same():
    checks = compare_results(STORED, copy.deepcopy(STORED))
    assert {c.metric for c in checks} == {"psnr", "lpips"}
    assert all(c.ok and c.max_diff == 0 for c in checks)
    assert all(c.compared == 6 for c in checks)  # 2 SNRs x 3 images
    assert "same" in format_checks(checks)


def test_a_changed_value_is_found_with_its_snr_and_image():
    fresh = copy.deepcopy(STORED)
    fresh["runs"][0]["per_image"]["psnr"][1][2] += 0.05
    c = _by_metric(compare_results(STORED, fresh))["psnr"]
    assert not c.ok and math.isclose(c.max_diff, 0.05, rel_tol=1e-9)
    assert c.where == "10 dB, c" and c.run == "deepjscc@1/16"
    assert "DIFFERS" in format_checks([c])
    # within the tolerance, and with a looser one, it passes
    fresh["runs"][0]["per_image"]["psnr"][1][2] = 32.0 + TOLERANCE_DB / 2
    assert _by_metric(compare_results(STORED, fresh))["psnr"].ok
    fresh["runs"][0]["per_image"]["psnr"][1][2] = 32.05
    assert _by_metric(compare_results(STORED, fresh, tol_db=0.1))["psnr"].ok


def test_a_changed_lpips_value_is_judged_by_its_own_tolerance():
    """LPIPS (not in dB) differs at 2e-4 and passes at 5e-5: 1e-4, not 0.01."""
    for delta, ok in ((2e-4, False), (5e-5, True)):
        fresh = copy.deepcopy(STORED)
        fresh["runs"][0]["per_image"]["lpips"][0][1] += delta
        c = _by_metric(compare_results(STORED, fresh))["lpips"]
        assert c.ok is ok and math.isclose(c.max_diff, delta, rel_tol=1e-6)
        assert ("DIFFERS" in format_checks([c])) is not ok


def test_a_rerun_of_the_first_images_compares_those_only():
    # the re-run scored image "a" only (--limit 1); a change to "c" in the file goes unseen,
    # a change to "a" does not
    fresh = _doc([[20.0], [30.0]], images=("a",))
    stored = copy.deepcopy(STORED)
    stored["runs"][0]["per_image"]["psnr"][0][2] = 99.0
    c = _by_metric(compare_results(stored, fresh))["psnr"]
    assert c.ok and c.compared == 2
    stored["runs"][0]["per_image"]["psnr"][0][0] = 20.5
    assert not _by_metric(compare_results(stored, fresh))["psnr"].ok


def test_missing_values_match_only_missing_values():
    stored, fresh = copy.deepcopy(STORED), copy.deepcopy(STORED)
    stored["runs"][0]["per_image"]["lpips"][0][0] = None  # could not be computed (JSON null)
    fresh["runs"][0]["per_image"]["lpips"][0][0] = math.nan
    assert _by_metric(compare_results(stored, fresh))["lpips"].ok
    fresh["runs"][0]["per_image"]["lpips"][0][0] = 0.3
    assert _by_metric(compare_results(stored, fresh))["lpips"].max_diff == math.inf


def test_a_file_without_per_image_values_compares_means_of_a_whole_rerun():
    stored = _doc([[20.0, 21.0, 22.0], [30.0, 31.0, 32.0]], per_image=False)
    checks = compare_results(stored, copy.deepcopy(STORED))
    assert {c.metric for c in checks} == {"psnr", "lpips"}
    assert all(c.ok and c.compared == 2 and c.where.endswith("mean") for c in checks)
    fresh = copy.deepcopy(STORED)
    fresh["runs"][0]["psnr"][0] += 0.1
    assert _by_metric(compare_results(stored, fresh))["psnr"].where == "0 dB, mean"
    assert not _by_metric(compare_results(stored, fresh))["psnr"].ok
    with pytest.raises(ValueError, match=r"no per-image values.*re-run all 3 images"):
        compare_results(stored, _doc([[20.0], [30.0]], images=("a",)))


def test_a_rerun_that_does_not_match_the_file_is_refused():
    other = copy.deepcopy(STORED)
    other["runs"][0]["scheme"] = "adjscc"
    with pytest.raises(ValueError, match=r"no run 'deepjscc@1/16'.*adjscc@1/16"):
        compare_results(STORED, other)
    other = copy.deepcopy(STORED)
    other["runs"][0]["snr_db"] = [0.0, 5.0]
    with pytest.raises(ValueError, match="SNRs"):
        compare_results(STORED, other)
    other = _doc([[20.0], [30.0]], images=("z",))
    with pytest.raises(ValueError, match="images the file has not"):
        compare_results(STORED, other)


def test_tolerances_by_unit():
    # the README's numbers: 0.01 dB for dB-valued metrics, 1e-4 for the others
    assert (TOLERANCE_DB, TOLERANCE) == (0.01, 1e-4)
    assert tolerance_for("psnr") == TOLERANCE_DB
    assert tolerance_for("snr_error_db") == TOLERANCE_DB
    assert tolerance_for("snr_est_rmse_db") == TOLERANCE_DB
    assert tolerance_for("lpips") == TOLERANCE and tolerance_for("ms_ssim") == TOLERANCE


def test_changed_weights_are_named():
    fresh = copy.deepcopy(STORED)
    assert weight_changes(STORED, fresh) == []
    fresh["runs"][0]["weights"] = {"codec": "000000000000", "denoiser": "abcdefabcdef"}
    assert weight_changes(STORED, fresh) == [
        "deepjscc@1/16: codec 111ed5e4f24a -> 000000000000",
        "deepjscc@1/16: denoiser none -> abcdefabcdef",
    ]
    older = copy.deepcopy(STORED)  # written before curves recorded their fingerprints
    del older["runs"][0]["weights"]
    said = weight_changes(older, STORED)
    assert said == ["deepjscc@1/16: codec 111ed5e4f24a (the file records none)"]


def test_recorded_commands():
    draws = ["--seed", "0", "--batch-size", "8"]  # recorded by none: the defaults of then
    assert recorded_eval_commands(STORED, "r.json") == [
        ("r.json", ["eval", "--scheme", "deepjscc", "--out", "r.json", *draws])
    ]
    launched = {"meta": {"command": "torchrun --nproc_per_node=2 -m semcom.cli eval --seed 1"}}
    assert recorded_eval_commands(launched, "r.json") == [
        ("r.json", ["eval", "--seed", "1", "--batch-size", "8"])
    ]
    # a merged file: its sources' commands in merge order, a merge of merges flattened
    a = {"file": "a.json", "command": "semcom eval --seed 0 --out a.json"}
    b = {"file": "b.json", "command": "semcom eval --seed 0 --out b.json"}
    inner = {"file": "ab.json", "seed": 0, "sources": [a, b]}
    c = {"file": "c.json", "command": "semcom eval --seed 0 --out c.json"}
    merged = {"runs": [], "meta": {"seed": 0, "sources": [inner, c]}}
    got = recorded_eval_commands(merged, "m.json")
    assert [f for f, _ in got] == ["a.json", "b.json", "c.json"]
    assert got[2][1] == ["eval", "--seed", "0", "--out", "c.json", "--batch-size", "8"]
    bad = {"file": "x.json", "command": "semcom experiment ood --out x.json"}
    with pytest.raises(ValueError, match=r"x\.json records `semcom experiment ood"):
        recorded_eval_commands({"meta": {"sources": [a, bad]}}, "m.json")
    with pytest.raises(ValueError, match=r"m\.json was merged from no recorded sources"):
        recorded_eval_commands({"meta": {"sources": []}}, "m.json")
    for meta in ({"command": "semcom merge a.json --out b.json"}, {}):
        with pytest.raises(ValueError, match="not a `semcom eval` run"):
            recorded_eval_commands({"runs": [], "meta": meta}, "b.json")


def test_a_command_that_left_the_draws_to_defaults_reruns_with_the_recorded_values():
    """The seed and the batch size decide the channel draws: a command that left them to their
    defaults re-runs with the values its file's meta records (not today's defaults), an
    explicit one as given (``--flag=value`` too); a value that is no whole number is refused."""
    meta = {"command": "semcom eval --scheme vae --out r.json", "seed": 3, "batch_size": 2}
    ((_, args),) = recorded_eval_commands({"meta": meta}, "r.json")
    assert args == ["eval", "--scheme", "vae", "--out", "r.json", "--seed", "3", "--batch-size",
                    "2"]  # fmt: skip
    meta["command"] = "semcom eval --batch-size=4 --seed 5"
    ((_, args),) = recorded_eval_commands({"meta": meta}, "r.json")
    assert args == ["eval", "--batch-size=4", "--seed", "5"]
    sources = [{"file": "a.json", "command": "semcom eval", "batch_size": 1, "seed": 0}, meta]
    got = recorded_eval_commands({"meta": {"seed": 0, "sources": sources}}, "m.json")
    assert got[0][1] == ["eval", "--seed", "0", "--batch-size", "1"]
    for bad in ("8", None, True):
        meta = {"command": "semcom eval", "batch_size": bad}
        with pytest.raises(ValueError, match=rf"r\.json records meta\.batch_size = {bad!r}"):
            recorded_eval_commands({"meta": meta}, "r.json")


def test_an_experiment_file_is_compared_number_by_number():
    stored = {
        "experiment": "perturb", "scheme": "vae+dm", "snr_db": [-10.0, 0.0], "deltas": [-0.5, 0.0],
        "t": {"psnr": [[17.0, 18.0], [22.0, 22.7]], "latent_mse": [[0.9, 0.8], [0.5, 0.4]]},
        "per_image": {"t": {"psnr": [[[17.0], [18.0]], [[22.0], [22.7]]]}},
        "command": "semcom experiment perturb --out p.json",
    }  # fmt: skip
    fresh = copy.deepcopy(stored)
    fresh["command"] = "semcom experiment perturb --out /tmp/x/p.json"  # provenance: ignored
    checks = {(c.run, c.metric): c for c in compare_documents(stored, fresh)}
    assert set(checks) == {
        ("(settings)", "-"), ("snr_db", "snr_db"), ("t", "psnr"), ("t", "latent_mse"),
        ("per_image", "psnr"),
    }  # fmt: skip
    assert all(c.ok and c.max_diff == 0 for c in checks.values())
    assert checks[("t", "psnr")].compared == 4 and checks[("(settings)", "-")].compared == 4
    fresh["t"]["psnr"][1][0] += 0.02  # over the dB tolerance
    fresh["t"]["latent_mse"][0][1] += 5e-5  # under the other one
    checks = {(c.run, c.metric): c for c in compare_documents(stored, fresh)}
    assert not checks[("t", "psnr")].ok and checks[("t", "psnr")].where == "t/psnr/1/0"
    assert checks[("t", "latent_mse")].ok and checks[("t", "latent_mse")].max_diff > 0
    fresh = copy.deepcopy(stored)
    fresh["scheme"] = "vae"  # another text: infinitely different
    bad = [c for c in compare_documents(stored, fresh) if not c.ok]
    assert [(c.run, c.where, c.max_diff) for c in bad] == [("(settings)", "scheme", math.inf)]
    fresh = copy.deepcopy(stored)
    fresh["t"]["counts"] = [1.0]  # an entry a newer format added: not compared
    assert all(c.ok for c in compare_documents(stored, fresh))
    del fresh["t"]["latent_mse"][1]  # a value the re-run lacks
    bad = [c for c in compare_documents(stored, fresh) if not c.ok]
    assert [(c.where, c.max_diff) for c in bad] == [("t/latent_mse/1/0", math.inf)]


def test_a_difference_of_exactly_the_tolerance_passes() -> None:
    """A difference of exactly the tolerance (0.01 dB) is within it: ok, not DIFFERS."""
    stored = _doc([[0.0, 21.0, 22.0], [30.0, 31.0, 32.0]])
    fresh = copy.deepcopy(stored)
    fresh["runs"][0]["per_image"]["psnr"][0][0] = TOLERANCE_DB  # |0.01 - 0| == 0.01 exactly
    c = _by_metric(compare_results(stored, fresh))["psnr"]
    assert c.max_diff == TOLERANCE_DB and c.ok
    assert "DIFFERS" not in format_checks([c])


def test_a_rerun_of_other_images_is_matched_by_name() -> None:
    """A re-run of images "c" then "b" (not the file's first ones) is compared with the
    file's "c" and "b", found by name, not by position."""
    fresh = _doc([[22.0, 21.0], [32.0, 31.0]], images=("c", "b"))
    c = _by_metric(compare_results(STORED, fresh))["psnr"]
    assert c.ok and c.max_diff == 0 and c.compared == 4
    fresh["runs"][0]["per_image"]["psnr"][1][0] = 32.5  # image "c" at 10 dB
    c = _by_metric(compare_results(STORED, fresh))["psnr"]
    assert math.isclose(c.max_diff, 0.5) and c.where == "10 dB, c"


def test_the_first_of_equal_largest_differences_is_named() -> None:
    """Two values off by the same amount: the check names the first (SNR, then image); with
    every value equal it still names the first place compared."""
    c = _by_metric(compare_results(STORED, copy.deepcopy(STORED)))["psnr"]
    assert c.where == "0 dB, a"
    fresh = copy.deepcopy(STORED)
    fresh["runs"][0]["per_image"]["psnr"][0][1] += 0.5  # 20.5 - 20 (b at 0 dB)
    fresh["runs"][0]["per_image"]["psnr"][1][1] += 0.5  # 31.5 - 31 (b at 10 dB): the same
    assert _by_metric(compare_results(STORED, fresh))["psnr"].where == "0 dB, b"


def test_a_rerun_without_a_metric_of_the_file_is_refused() -> None:
    """The file's per-image LPIPS has no counterpart in a re-run that did not score it."""
    fresh = copy.deepcopy(STORED)
    del fresh["runs"][0]["per_image"]["lpips"]
    with pytest.raises(ValueError, match="re-run has no per-image 'lpips'"):
        compare_results(STORED, fresh)


def test_means_are_compared_at_the_snr_where_they_differ_most() -> None:
    """Per mean: the largest difference is found at any SNR, not only the first, and a
    re-run of more images than the file's (other means) is refused too."""
    stored = _doc([[20.0, 21.0, 22.0], [30.0, 31.0, 32.0]], per_image=False)
    fresh = copy.deepcopy(stored)
    fresh["runs"][0]["psnr"][1] -= 0.25  # 31.0 -> 30.75 at 10 dB
    c = _by_metric(compare_results(stored, fresh))["psnr"]
    assert c.where == "10 dB, mean" and math.isclose(c.max_diff, 0.25) and not c.ok
    more = _doc([[20.0] * 4, [30.0] * 4], images=("a", "b", "c", "d"), per_image=False)
    with pytest.raises(ValueError, match="re-run all 3 images"):
        compare_results(stored, more)


def test_format_checks_verdicts_and_places() -> None:
    """Verdicts: "same" only for no difference at all (and then no place is named), "ok" for
    one within the tolerance, "DIFFERS" past it."""
    same = Check("r", "psnr", 2, 0.0, "0 dB, a", 0.01)
    ok = Check("r", "psnr", 2, 0.005, "10 dB, b", 0.01)
    bad = Check("r", "lpips", 2, 0.5, "0 dB, c", 1e-4)
    rows = format_checks([same, ok, bad]).splitlines()
    assert rows[1].split()[-1] == "same" and "0 dB, a" not in rows[1]
    assert rows[2].split()[-1] == "ok" and "10 dB, b" in rows[2]
    assert rows[3].endswith("DIFFERS (> 0.0001)") and "0 dB, c" in rows[3]


def test_an_experiment_file_ignores_its_timings_and_judges_settings_strictly() -> None:
    """Wall time and seconds per image are not results; a setting (no metric on its path) is
    judged by the non-dB tolerance (1e-4), so a delta off by 1e-3 differs; a boolean is not the
    number 1.5."""
    stored = {"deltas": [-0.5, 0.0], "flag": True, "t": {"psnr": [17.0]},
              "wall_seconds": 12.0, "seconds_per_image": [0.5]}  # fmt: skip
    fresh = {**copy.deepcopy(stored), "wall_seconds": 99.0, "seconds_per_image": [7.0]}
    checks = {(c.run, c.metric): c for c in compare_documents(stored, fresh)}
    assert set(checks) == {("(settings)", "-"), ("t", "psnr")}
    assert checks[("(settings)", "-")].compared == 3 and checks[("(settings)", "-")].max_diff == 0
    fresh["deltas"][0] = -0.499
    c = {(c.run, c.metric): c for c in compare_documents(stored, fresh)}[("(settings)", "-")]
    assert c.tolerance == TOLERANCE and not c.ok and c.where == "deltas/0"
    fresh = {**copy.deepcopy(stored), "flag": 1.5}
    bad = [c for c in compare_documents(stored, fresh) if not c.ok]
    assert [(c.where, c.max_diff) for c in bad] == [("flag", math.inf)]


def test_an_experiment_value_the_rerun_lacks_differs_even_when_null() -> None:
    """A value the file holds as null (not computed) and the re-run lacks is a difference."""
    stored = {"t": {"psnr": [17.0, None]}}
    fresh = {"t": {"psnr": [17.0]}}
    (c,) = compare_documents(stored, fresh)
    assert c.max_diff == math.inf and c.where == "t/psnr/1"


def test_the_first_metric_name_on_a_path_sets_its_tolerance() -> None:
    """A value under ``psnr`` then ``lpips`` is judged in dB (0.01), as its first name says."""
    stored = {"t": {"psnr": {"lpips": [0.5]}}}
    fresh = {"t": {"psnr": {"lpips": [0.505]}}}
    (c,) = compare_documents(stored, fresh)
    assert (c.run, c.metric, c.tolerance) == ("t", "psnr", TOLERANCE_DB) and c.ok


# ------------------------------------------------------------------ the command, end to end
EVAL = ["eval", "--scheme", "deepjscc", "--cbr", "1/16", "--dataset", "samples", "--crop", "64",
        "--limit", "2", "--snr", "0", "10", "--metrics", "psnr", "ssim", "--quiet"]  # fmt: skip


@pytest.fixture
def sweep(tmp_path) -> Path:
    out = tmp_path / "r.json"
    assert main([*EVAL, "--out", str(out)]) == 0
    return out


def _edit(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc["runs"][0])
    path.write_text(json.dumps(doc))


def test_reproduce_reruns_the_recorded_command(sweep, tmp_path, capsys):
    assert main(["reproduce", str(sweep), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 images re-run" in out and f"{sweep}: reproduced" in out
    assert "psnr" in out and "ssim" in out
    # the first image only, its files kept
    keep = ["--keep", str(tmp_path / "k")]
    assert main(["reproduce", str(sweep), "--limit", "1", "--quiet", *keep]) == 0
    assert "1 of 2 images re-run" in capsys.readouterr().out
    kept = json.loads((tmp_path / "k" / "r.json").read_text())
    assert kept["runs"][0]["n_images"] == 1 and kept["meta"]["command"].endswith("--limit 1")
    # the command that made the kept file: its own --out, once, no --force
    command = kept["meta"]["command"]
    assert command.count("--out") == 1 and f"--out {tmp_path / 'k' / 'r.json'}" in command
    assert "--force" not in command
    assert kept["runs"][0]["per_image"]["psnr"][0][0] == pytest.approx(
        json.loads(sweep.read_text())["runs"][0]["per_image"]["psnr"][0][0], abs=1e-4
    )


def test_reproduce_draws_with_the_batch_size_the_file_records(tmp_path, capsys):
    """A sweep's draws depend on how its SNRs were batched: a file whose command does not
    name its batch size (the default then, recorded in meta.batch_size) re-runs with that one,
    not today's default (8 here, which draws otherwise)."""
    out, argv = tmp_path / "r.json", list(EVAL)
    argv[argv.index("--snr") + 1 : argv.index("--snr") + 3] = ["0", "5", "10"]
    assert main([*argv, "--batch-size", "2", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    doc["meta"]["command"] = doc["meta"]["command"].replace(" --batch-size 2", "")
    assert "--batch-size" not in doc["meta"]["command"] and doc["meta"]["batch_size"] == 2
    out.write_text(json.dumps(doc))
    assert main(["reproduce", str(out), "--limit", "1", "--quiet"]) == 0
    assert f"{out}: reproduced" in capsys.readouterr().out
    doc["meta"]["batch_size"] = 8  # other batches, other draws: the check can fail
    out.write_text(json.dumps(doc))
    assert main(["reproduce", str(out), "--limit", "1", "--quiet"]) == 1
    assert "DIFFERS" in capsys.readouterr().out


def test_reproduce_finds_a_changed_number(sweep, capsys):
    def bump_second_image(run):
        run["per_image"]["psnr"][1][1] += 0.05

    _edit(sweep, bump_second_image)
    # not among the first image: unseen with --limit 1
    assert main(["reproduce", str(sweep), "--limit", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["reproduce", str(sweep), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out and "10 dB" in out and "1 of 2 differ" in out


def test_reproduce_names_changed_weights(sweep, capsys):
    _edit(sweep, lambda run: run.update(weights={"codec": "000000000000"}))
    assert main(["reproduce", str(sweep), "--limit", "1", "--quiet"]) == 0
    assert "network fingerprints: deepjscc@1/16: codec 000000000000 ->" in capsys.readouterr().out


def test_reproduce_a_merged_file_reruns_its_sources(sweep, tmp_path, capsys):
    # a second sweep of another scheme on the same images, merged after the first
    other = tmp_path / "o.json"
    argv = [*EVAL, "--out", str(other)]
    argv[argv.index("deepjscc")] = "jpeg+capacity"
    assert main(argv) == 0
    merged = tmp_path / "m.json"
    assert main(["merge", str(sweep), str(other), "--out", str(merged)]) == 0
    capsys.readouterr()
    assert main(["reproduce", str(merged), "--limit", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 recorded commands" in out and "deepjscc@1/16" in out and "jpeg+capacity@1/16" in out
    # a run without per-image values is left out of a --limit check, and said so
    doc = json.loads(merged.read_text())
    doc["runs"][1].pop("per_image")
    older = tmp_path / "older.json"
    older.write_text(json.dumps(doc))
    assert main(["reproduce", str(older), "--limit", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "jpeg+capacity keeps no per-image values: not compared" in out
    assert "jpeg+capacity@1/16" not in out.split("not compared", 1)[1]
    _edit(merged, lambda run: run["per_image"]["ssim"][0].__setitem__(0, 0.0))  # the first run
    assert main(["reproduce", str(merged), "--limit", "1", "--quiet"]) == 1
    assert "1 of 4 differ" in capsys.readouterr().out


def test_reproduce_says_what_it_cannot_rerun_and_goes_on(sweep, tmp_path, capsys):
    spread = tmp_path / "s.json"
    assert main([*EVAL, "--spread", "--out", str(spread)]) == 0
    capsys.readouterr()
    missing = str(tmp_path / "none.json")
    code = main(["reproduce", missing, str(spread), str(sweep), "--limit", "1", "--quiet"])
    assert code == 2
    cap = capsys.readouterr()
    assert "none.json: no such results file" in cap.err and "--spread" in cap.err
    assert "1 of 3 files reproduced, 2 could not be re-run" in cap.out
    assert main(["reproduce", str(sweep), "--tolerance", "-1"]) == 2
    assert "--tolerance must be >= 0" in capsys.readouterr().err


def test_reproduce_reruns_an_experiment_whole(tmp_path, data_root, weights_root, capsys):
    out = tmp_path / "ood.json"
    assert main(["experiment", "ood", "--scheme", "vae", "--in-data", "bsds500-val",
                 "--out-data", "kodak", "--limit", "1", "--crop", "32", "--snr", "0",
                 "--metrics", "psnr", "--quiet", "--out", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["reproduce", str(out), "--quiet"]) == 0
    cap = capsys.readouterr()
    assert f"{out}: reproduced" in cap.out and "dm_gain" not in cap.out  # no X+dm: no gain
    assert "drop" in cap.out and "mean over SNRs" not in cap.out  # its verdicts stay out
    doc = json.loads(out.read_text())
    doc["drop"]["vae"]["psnr"][0] += 0.5
    out.write_text(json.dumps(doc))
    assert main(["reproduce", str(out), "--quiet"]) == 1
    assert "drop/vae/psnr/0" in capsys.readouterr().out
    assert main(["reproduce", str(out), "--limit", "1"]) == 2
    assert "reproduce it whole (no --limit)" in capsys.readouterr().err


def test_reproduce_a_file_without_per_image_values_whole(sweep, capsys):
    _edit(sweep, lambda run: run.pop("per_image"))
    assert main(["reproduce", str(sweep), "--limit", "1", "--quiet"]) == 2
    assert "r.json keeps no per-image values" in capsys.readouterr().err
    assert main(["reproduce", str(sweep), "--quiet"]) == 0  # the means, of all images
    out = capsys.readouterr().out
    assert "2 of 2 images re-run" in out and "reproduced" in out


# --------------------------------------------------- the shipped results still come out
@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "kodak-awgn-jscc16.json",  # deepjscc, deepjscc+dm, adjscc at 1/16
        "kodak-awgn-adjscc-dm.json",  # adjscc+dm with its behind-dm decoder
        "kodak-awgn-known-snr-crop.json",  # vae, vae+dm (TAEF2)
        "kodak24-rayleigh-fast-adjscc-naive-k1.json",  # fast fading, per-symbol levels
    ],
)
def test_shipped_results_reproduce_on_their_first_image(name, data_root, weights_root, capsys):
    """The numbers quoted in docs/results.md still come out of today's code, image by image."""
    assert main(["reproduce", str(REPO / "results" / name), "--limit", "1", "--quiet"]) == 0, (
        capsys.readouterr().out
    )
