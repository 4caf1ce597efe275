"""The results tools: ``semcom reproduce`` (re-run what a results file records, compare),
``merge``, ``table``, ``compare`` (paired intervals) and ``plot``."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..devices import command_args, without_options
from ..paths import MissingResourceError, atomic_path, atomic_write_json
from .args import EXIT_USAGE, CLIError
from .outputs import _command_of, _is_figure, _is_results, _replaceable


def _run_recorded(
    parser: argparse.ArgumentParser,
    source: str,
    recorded: list[str],
    args: argparse.Namespace,
    out: Path,
) -> None:
    """Run the command ``recorded`` (``semcom`` arguments of results file ``source``) again,
    writing ``out``; with ``args.limit``, on the first images only (``eval``). Its own summary
    is left out: reproduce prints the comparison."""
    import contextlib
    import io
    import shlex

    from ..train.cli import parse_args

    # the recorded command as it was given, checked by today's parser, writing ``out`` instead
    # of its own --out (so a kept re-run records the command that made it, one --out)
    words = without_options(recorded, ("--out",), flags=("--force",))
    try:
        ns = parse_args(parser, [*words, "--out", str(out)])
    except SystemExit:
        raise CLIError(f"{source}: its recorded command no longer parses (above)") from None
    ns.force = True  # the re-run replaces whatever --keep DIR held
    which = ""
    if args.limit is not None:
        if ns.spread:
            raise CLIError(
                f"{source} spreads its images over the data set (--spread): fewer of them are "
                "other images, so reproduce it whole (no --limit)"
            )
        ns.limit = args.limit if ns.limit is None else min(args.limit, ns.limit)
        ns.argv = [*ns.argv, "--limit", str(ns.limit)]  # what a kept file records
        which = f" on its first {ns.limit} images"
    if not args.quiet:
        print(f"{source}: re-running `semcom {shlex.join(recorded)}`{which}", file=sys.stderr)
    ns.quiet, ns.summary = args.quiet, False
    with contextlib.redirect_stdout(io.StringIO()):
        ns.func(ns)


def _verdict(name: str, checks: Sequence, notes: Sequence[str] = ()) -> bool:
    """Print the comparison's table, ``notes`` and the file's verdict; True when every check
    is within its tolerance."""
    from ..eval.reproduce import format_checks

    print(format_checks(checks))
    for note in notes:
        print(f"  {note}")
    bad = sum(not c.ok for c in checks)
    print(f"{name}: " + (f"{bad} of {len(checks)} differ" if bad else "reproduced"))
    return not bad


def _reproduce_one(name: str, args: argparse.Namespace) -> bool:
    """Re-run the ``semcom eval`` commands results file ``name`` records (its own, or the
    sources' of a merged file), compare and print; True when all is within the tolerances."""
    import tempfile

    from ..eval.plot import load_results, read_json, results_of
    from ..eval.reproduce import compare_results, recorded_eval_commands, weight_changes
    from .parser import build_parser  # (which imports this module)

    doc = read_json(name)  # read and parsed once (a file of per-image values may be large)
    command = _command_of(doc)
    words = command_args(command) if command else None
    if words and words[0] == "experiment" and isinstance(doc, dict):  # (a dict: it has one)
        return _reproduce_experiment(name, words, args, doc)
    stored = results_of(doc, name)
    commands = recorded_eval_commands(stored, name)
    if args.limit is not None:  # a subset compares per image: runs without them are left out
        whole = [r for r in stored["runs"] if not r.get("per_image")]
        if len(whole) == len(stored["runs"]):
            raise CLIError(
                f"{name} keeps no per-image values (a file written before they were recorded):"
                " only its means compare, so reproduce it whole (no --limit)"
            )
        for r in whole:
            print(f"  {name}: {r['scheme']} keeps no per-image values: not compared (no --limit)")
        stored = {**stored, "runs": [r for r in stored["runs"] if r.get("per_image")]}
    parser = build_parser()
    t0 = time.perf_counter()
    fresh_runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (source, recorded) in enumerate(commands):
            out = Path(args.keep or tmp) / (str(k) if len(commands) > 1 else "") / Path(source).name
            out.parent.mkdir(parents=True, exist_ok=True)
            _run_recorded(parser, source, recorded, args, out)
            fresh_runs += load_results(out)["runs"]
    fresh = {"runs": fresh_runs}  # a later source's run replaces an earlier one, as in merge
    try:
        checks = compare_results(stored, fresh, args.tolerance_db, args.tolerance)
    except ValueError as e:
        raise CLIError(f"{name}: {e}") from None
    n_new = fresh_runs[-1]["n_images"] if fresh_runs else 0
    n_old = stored["runs"][0]["n_images"] if stored["runs"] else 0
    runs = f", {len(commands)} recorded commands" if len(commands) > 1 else ""
    print(f"{name}: {n_new} of {n_old} images re-run{runs} ({time.perf_counter() - t0:.0f} s)")
    changes = [f"network fingerprints: {c}" for c in weight_changes(stored, fresh)]
    return _verdict(name, checks, changes)


def _reproduce_experiment(
    name: str, recorded: list[str], args: argparse.Namespace, stored: dict
) -> bool:
    """Re-run the ``semcom experiment`` results file ``name`` (its JSON ``stored``) records
    (whole: its numbers are means over its images), compare every number and print; True when
    all are within the tolerances."""
    import tempfile

    from ..eval.reproduce import compare_documents
    from .parser import build_parser  # (which imports this module)

    if args.limit is not None:
        raise CLIError(
            f"{name} holds an experiment's means over its images: reproduce it whole (no --limit)"
        )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or tmp) / Path(name).name
        out.parent.mkdir(parents=True, exist_ok=True)
        _run_recorded(build_parser(), name, recorded, args, out)
        fresh = json.loads(out.read_text())
    checks = compare_documents(stored, fresh, args.tolerance_db, args.tolerance)
    print(f"{name}: re-run ({time.perf_counter() - t0:.0f} s)")
    return _verdict(name, checks)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``semcom reproduce FILE...``: re-run and compare each file; returns 0 (all
    reproduced), 1 (one differs) or the usage status (one could not be re-run)."""
    for flag, value in (("--tolerance-db", args.tolerance_db), ("--tolerance", args.tolerance)):
        if not value >= 0:  # NaN too
            raise CLIError(f"{flag} must be >= 0, got {value}")
    if args.keep and Path(args.keep).exists() and not Path(args.keep).is_dir():
        raise CLIError(f"--keep {args.keep!r} is a file: give a folder for the re-runs")
    differ, errors = [], []
    for name in args.results:  # a file that cannot be re-run is said and skipped
        try:
            if not _reproduce_one(name, args):
                differ.append(name)
        except (CLIError, MissingResourceError, ValueError, OSError) as e:
            errors.append(name)
            print(f"semcom: error: {' '.join(str(e).split())}", file=sys.stderr)
    if len(args.results) > 1:
        done = len(args.results) - len(differ) - len(errors)
        print(
            f"{done} of {len(args.results)} files reproduced"
            + (f", {len(differ)} differ ({', '.join(differ)})" if differ else "")
            + (f", {len(errors)} could not be re-run ({', '.join(errors)})" if errors else "")
        )
    return EXIT_USAGE if errors else (1 if differ else 0)


def cmd_merge(args: argparse.Namespace) -> int:
    """``semcom merge A B --out C``: merge sweeps of one data set, channel and seed; 0."""
    from ..eval.plot import load_results
    from ..eval.sweep import merge_results

    out = _replaceable(args.out, "--out", args.force, _is_results, "a results JSON")
    doc = merge_results([load_results(f) for f in args.results], args.results)
    atomic_write_json(out, doc, indent=1)
    print(f"wrote {args.out} ({len(doc['runs'])} runs)")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    """``semcom table FILE...``: the runs (and ``--anchors``' published curves) as a table
    (Markdown, CSV or LaTeX), printed or written to ``--out``; returns 0."""
    from ..eval.table import results_table

    out, fmt = _table_output(args)
    _check_anchors(args.anchors, args.results)
    text = results_table(
        args.results, args.metrics, ci=args.ci, fmt=fmt, best=args.best, runs=args.scheme,
        snrs=args.snr, labels=_labels(args.label), anchors=args.anchors,
    )  # fmt: skip
    _write_table(text, out, fmt)
    return 0


def _table_output(args: argparse.Namespace) -> tuple[Path | None, str]:
    """``--out`` of ``table`` / ``compare`` checked before any work (an existing file that is
    not a table of theirs refused unless ``--force``; None: print) and the format: ``--format``,
    else by the ``--out`` suffix (.md .csv .tex), else Markdown."""
    from ..eval.table import SUFFIX_FORMATS

    out = None
    if args.out is not None:
        out = _replaceable(args.out, "--out", args.force, _is_table_file, "a table")
    fmt = args.format or (SUFFIX_FORMATS.get(out.suffix.lower()) if out else None) or "markdown"
    return out, fmt


def _write_table(text: str, out: Path | None, fmt: str) -> None:
    """Print table ``text``, or write it to ``out`` (atomically) and say so."""
    if out is None:
        print(text)
        return
    with atomic_path(out) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {out} ({fmt})")


def _is_table_file(path: Path) -> bool:
    """A table ``semcom table --out`` or ``semcom compare --out`` wrote (any format)."""
    from ..eval.stats import is_comparison_text
    from ..eval.table import is_table_text

    try:
        with path.open(encoding="utf-8") as f:
            head = "".join(f.readline(4096) for _ in range(4))  # the first lines tell
    except (OSError, UnicodeDecodeError):
        return False
    return is_table_text(head) or is_comparison_text(head)


def _check_anchors(files: Sequence[str], results: Sequence[str]) -> None:
    """At least one results file, and ``--anchors`` files that exist (a missing one said as
    such: it read as a missing results file). ``--anchors`` takes every file after it, so
    results files given after it are said to go first."""
    if not results:
        raise CLIError(
            "no results files given"
            + (": --anchors takes every file after it; give the results files before --anchors"
               if files else " (results JSON files from 'semcom eval')")
        )  # fmt: skip
    for f in files:
        if not Path(f).is_file():
            what = "a folder: give its files" if Path(f).is_dir() else "no such file"
            raise CLIError(
                f"--anchors {f!r}: {what} (published curves in the results format, such as "
                "the repository's results/anchors/*.json)"
            )


def _labels(pairs: Sequence[tuple[str, str]] | None) -> dict[str, str]:
    """``--label RUN=TEXT`` values -> ``{RUN: TEXT}``; a run labelled twice is an error."""
    labels: dict[str, str] = {}
    for run, text in pairs or ():
        if run in labels and labels[run] != text:
            raise CLIError(f"--label {run}: given twice ({labels[run]!r}, {text!r})")
        labels[run] = text
    return labels


def cmd_compare(args: argparse.Namespace) -> int:
    """``semcom compare FILE... --scheme A --against B``: paired comparison per SNR;
    returns 0."""
    from ..eval.plot import load_results
    from ..eval.stats import compare_runs, comparison_table, find_runs, run_label
    from ..eval.sweep import check_mergeable

    out, fmt = _table_output(args)
    docs = [(f, load_results(f)) for f in args.results]
    found_a, found_b = find_runs(docs, args.scheme), find_runs(docs, args.against)
    # both runs from one file (the last holding both) saw the same draws; else each's last
    common = [f for f, _, _ in found_a if any(g == f for g, _, _ in found_b)]

    def pick(found: list) -> tuple:
        return next(x for x in found if x[0] == common[-1]) if common else found[-1]

    (file_a, doc_a, run_a), (file_b, doc_b, run_b) = pick(found_a), pick(found_b)
    if run_a is run_b and len(found_a) > 1:  # one scheme in two files (e.g. two channels)
        (file_a, doc_a, run_a), (file_b, doc_b, run_b) = found_a[0], found_a[-1]
    if run_a is run_b:  # e.g. --scheme adjscc --against adjscc@1/16: a difference of 0
        raise CLIError(
            f"--scheme {args.scheme} and --against {args.against} name the same run "
            f"({run_label(run_a)} in {file_a}): compare two different runs"
        )
    if len(found_a) > 1 or len(found_b) > 1:
        held = sorted({f for f, _, _ in found_a + found_b})
        print(
            f"semcom: note: several of the files ({', '.join(held)}) hold these runs; comparing "
            f"{args.scheme} from {file_a} and {args.against} from {file_b} (give one file to "
            "choose)",
            file=sys.stderr,
        )
    # the checks of 'semcom merge' on the two runs alone: same images, channel and seed, and
    # the same draws (one --snr list and batch size: also within a merged file)
    differ = check_mergeable(
        [{**doc_a, "runs": [run_a]}, {**doc_b, "runs": [run_b]}],
        [f"{args.scheme} ({file_a})", f"{args.against} ({file_b})"],
    )
    if differ:
        warnings.warn(
            f"the two runs saw the same images but not the same channel draws ({differ}): "
            "the paired interval still holds over the images, only wider than for two runs "
            "of one sweep",
            stacklevel=1,
        )
    rows = compare_runs(run_a, run_b, args.metrics, args.level, (args.scheme, args.against))
    named = (f"{args.scheme} ({file_a})", f"{args.against} ({file_b})")
    _write_table(comparison_table(rows, named, args.level, fmt), out, fmt)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``semcom plot FILE... --out fig.png``: every run against the SNR; returns 0."""
    from ..eval.plot import FIGURE_FORMATS, plot_results

    if Path(args.out).suffix.lower() not in FIGURE_FORMATS:
        kinds = ", ".join(f.upper() for f in FIGURE_FORMATS.values())
        raise CLIError(
            f"--out {args.out!r}: plot writes {kinds} by the name's suffix; give a name ending "
            f"in {', '.join(FIGURE_FORMATS)}"
        )
    _replaceable(args.out, "--out", args.force, _is_figure, "a figure")
    _check_anchors(args.anchors, args.results)
    out = plot_results(
        args.results, args.metric, args.out, args.anchors, args.title, args.ci,
        runs=args.scheme, labels=_labels(args.label), size=args.size, legend=args.legend,
        snr_range=args.snr, dpi=args.dpi,
    )  # fmt: skip
    print(f"wrote {out}")
    return 0
