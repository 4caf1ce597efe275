"""Check that a results file still comes out of the code: re-run the command it records and
compare the numbers (``semcom reproduce``).

Every ``eval`` results file records the command that made it (``meta.command``; a merged file
its sources' under ``meta.sources``), the fingerprints of the networks each curve ran
(``weights``) and each image's value per SNR and metric (``per_image``, 6 significant digits).
``eval`` seeds each image's noise by its index in the data set (:func:`.sweep.image_seed`), so
the first N images of a re-run with ``--limit N`` see the same channel draws as in the full
run: a few images check a long sweep. The comparison is per image (or, for a file without
per-image values re-run whole, per mean), so a difference is pinned to its run, metric, SNR
and image. ``experiment`` files (perturb, ood) are compared number by number
(:func:`compare_documents`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..names import METRICS, in_db
from .stats import run_label
from .text import aligned

#: default tolerances: dB-valued metrics (PSNR, ``*_db``) and the rest (SSIM, LPIPS, ...),
#: absolute; the stored per-image values carry 6 significant digits
TOLERANCE_DB = 0.01
TOLERANCE = 1e-4
#: run entries that are the run's metrics (lists of one mean per SNR)
_NOT_METRICS = {"snr_db", "seconds_per_image"}
#: metric names on the paths of an experiment's values (their tolerance's unit)
_METRIC_KEYS = {*METRICS, "latent_mse"}


@dataclass(frozen=True)
class Check:
    """One run's metric (an experiment's entry's) against the re-run: the largest absolute
    difference over the values compared (``where``: its SNR and image, or its path), and
    whether it is within ``tolerance``."""

    run: str
    metric: str
    compared: int
    max_diff: float
    where: str
    tolerance: float

    @property
    def ok(self) -> bool:
        """Whether ``max_diff`` is within ``tolerance``."""
        return self.max_diff <= self.tolerance


def tolerance_for(metric: str, tol_db: float = TOLERANCE_DB, tol: float = TOLERANCE) -> float:
    """The tolerance of ``metric``: ``tol_db`` for dB values (``psnr``, ``*_db``), else ``tol``."""
    return tol_db if in_db(metric) else tol


#: the options of ``semcom eval`` that decide its channel draws (:mod:`.sweep`), each with the
#: ``meta`` entry that records the value a sweep ran with and the value of a file that records
#: none (the option's default when the file was written: it has not changed since the first)
DRAW_OPTIONS = {"--seed": ("seed", 0), "--batch-size": ("batch_size", 8)}


def _with_draw_options(args: list[str], meta: dict, name: str) -> list[str]:
    """``args`` with each of :data:`DRAW_OPTIONS` they leave to its default given as the value
    ``meta`` records (a re-run then draws as the sweep did, whatever today's default);
    ``ValueError`` naming the file for a recorded value that is not a whole number."""
    out = list(args)
    for flag, (key, before) in DRAW_OPTIONS.items():
        if any(w == flag or w.startswith(f"{flag}=") for w in args):
            continue
        value = meta.get(key, before)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} records meta.{key} = {value!r}, not a whole number")
        out += [flag, str(value)]
    return out


def recorded_eval_commands(doc: dict, name: str) -> list[tuple[str, list[str]]]:
    """``(file, semcom arguments)`` of each ``semcom eval`` that made the results document
    ``doc``: its own command, or for a file of ``semcom merge`` its sources' commands in merge
    order (recursively; a later source's run replaces an earlier one of the same label). A
    command that leaves an option of :data:`DRAW_OPTIONS` (``--seed``, ``--batch-size``) to its
    default gets the value it ran with (``meta``; the old default for a file that records
    none). ``ValueError`` naming the file when one is not an ``eval`` command."""
    from ..devices import command_args

    meta = doc.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    sources = meta.get("sources")
    if isinstance(sources, list):
        out = []
        for source in sources:
            if not isinstance(source, dict):
                raise ValueError(f"{name}: a source in meta.sources is not a record: {source!r}")
            out += recorded_eval_commands({"meta": source}, str(source.get("file", "?")))
        if not out:
            raise ValueError(f"{name} was merged from no recorded sources: nothing to re-run")
        return out
    command = meta.get("command")
    args = command_args(command) if isinstance(command, str) else None
    if not args or args[0] != "eval":
        what = f"`{command}`" if isinstance(command, str) else "no command"
        raise ValueError(f"{name} records {what}, not a `semcom eval` run: nothing to re-run")
    return [(name, _with_draw_options(args, meta, name))]


def _same(a: float | None, b: float | None) -> float:
    """|a - b|, 0 when both are missing or NaN (a metric that could not be computed), inf
    when only one is."""
    na = a is None or math.isnan(a)
    nb = b is None or math.isnan(b)
    if na or nb:
        return 0.0 if na and nb else math.inf
    return abs(float(a) - float(b))  # type: ignore[arg-type]


def compare_results(
    stored: dict,
    fresh: dict,
    tol_db: float = TOLERANCE_DB,
    tol: float = TOLERANCE,
) -> list[Check]:
    """Compare every run of the ``stored`` results document with the ``fresh`` re-run.

    Per image where the stored run has per-image values (the re-run's images, found by name,
    may be the first few only), else per mean, which needs a re-run of every image. Runs are
    matched by label (``scheme@CBR``). ``ValueError`` when a run is missing from the re-run,
    the SNR lists differ, or a file without per-image values was re-run on fewer images."""
    fresh_runs = {run_label(r): r for r in fresh["runs"]}
    checks = []
    for run in stored["runs"]:
        label = run_label(run)
        new = fresh_runs.get(label)
        if new is None:
            raise ValueError(f"the re-run has no run {label!r} (it has {', '.join(fresh_runs)})")
        if [float(s) for s in run["snr_db"]] != [float(s) for s in new["snr_db"]]:
            raise ValueError(f"{label}: the re-run's SNRs {new['snr_db']} are not {run['snr_db']}")
        snrs = [f"{float(s):g} dB" for s in run["snr_db"]]
        per, per_new = run.get("per_image"), new.get("per_image")
        if per and per_new:
            index = {n: i for i, n in enumerate(per["images"])}
            missing = [n for n in per_new["images"] if n not in index]
            if missing:
                raise ValueError(f"{label}: the re-run scored images the file has not: {missing}")
            for metric in (k for k in per if k != "images"):
                if metric not in per_new:
                    raise ValueError(f"{label}: the re-run has no per-image {metric!r}")
                worst, where, n = 0.0, "", 0
                for j, snr in enumerate(snrs):
                    for k, image in enumerate(per_new["images"]):
                        d = _same(per[metric][j][index[image]], per_new[metric][j][k])
                        n += 1
                        if d > worst or not where:
                            worst, where = d, f"{snr}, {image}"
                checks.append(
                    Check(label, metric, n, worst, where, tolerance_for(metric, tol_db, tol))
                )
            continue
        if int(new["n_images"]) != int(run["n_images"]):
            raise ValueError(
                f"{label} has no per-image values (a file written before they were recorded): "
                f"only its means can be compared, so re-run all {run['n_images']} images "
                "(no --limit)"
            )
        for metric, values in run.items():
            if metric in _NOT_METRICS or not isinstance(values, list) or metric not in new:
                continue
            diffs = [_same(a, b) for a, b in zip(values, new[metric], strict=True)]
            j = max(range(len(diffs)), key=diffs.__getitem__)
            checks.append(
                Check(
                    label, metric, len(diffs), diffs[j], f"{snrs[j]}, mean",
                    tolerance_for(metric, tol_db, tol),
                )
            )  # fmt: skip
    return checks


#: entries of an experiment's file that are not results (timing, provenance)
_NOT_RESULTS = {"command", "meta", "date", "wall_seconds", "seconds_per_image"}


def _leaves(doc: object, path: tuple[str, ...] = ()):
    """``(path, value)`` of every number or string in a JSON document, entries of
    :data:`_NOT_RESULTS` left out."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k not in _NOT_RESULTS:
                yield from _leaves(v, (*path, str(k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, str(i)))
    else:
        yield path, doc


def compare_documents(
    stored: dict, fresh: dict, tol_db: float = TOLERANCE_DB, tol: float = TOLERANCE
) -> list[Check]:
    """Compare every number of an experiment's results file (``semcom experiment perturb`` /
    ``ood``) with its re-run, one check per top-level entry and metric (the first metric name
    on a value's path sets its tolerance, dB for ``psnr`` and ``*_db``; values under no metric,
    the experiment's settings, are one check). A text that differs, or a value the file holds
    and the re-run lacks, counts as an infinite difference at its path; entries only the
    re-run has (added to the format since the file was written) are not compared."""
    old, new = dict(_leaves(stored)), dict(_leaves(fresh))
    groups: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for path, a in old.items():  # what the file holds (a newer format may add entries)
        b = new.get(path)
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
        if numbers:
            d = _same(float(a), float(b))  # type: ignore[arg-type]
        else:
            d = 0.0 if path in new and a == b else math.inf
        metric = next((k for k in path if k in _METRIC_KEYS or in_db(k)), "-")
        entry = path[0] if metric != "-" else "(settings)"  # names, counts, SNRs, deltas, ...
        groups.setdefault((entry, metric), []).append((d, "/".join(path)))
    checks = []
    for (entry, metric), diffs in groups.items():
        worst, where = max(diffs, key=lambda x: x[0])
        tolerance = tol if metric == "-" else tolerance_for(metric, tol_db, tol)
        checks.append(Check(entry, metric, len(diffs), worst, where, tolerance))
    return checks


def weight_changes(stored: dict, fresh: dict) -> list[str]:
    """``run: network old -> new`` for every network fingerprint (``weights``) that differs
    between the stored runs and the re-run (a retrained checkpoint explains a difference);
    ``run: network new (the file records none)`` for a file written before curves recorded
    their fingerprints."""
    fresh_runs = {run_label(r): r for r in fresh["runs"]}
    out = []
    for run in stored["runs"]:
        label = run_label(run)
        old, new = run.get("weights") or {}, (fresh_runs.get(label) or {}).get("weights") or {}
        for net in sorted(set(old) | set(new)):
            if not old:
                out.append(f"{label}: {net} {new[net]} (the file records none)")
            elif old.get(net) != new.get(net):
                out.append(f"{label}: {net} {old.get(net, 'none')} -> {new.get(net, 'none')}")
    return out


def format_checks(checks: Sequence[Check]) -> str:
    """The checks as an aligned table: run, metric, values compared, largest difference,
    where, verdict."""
    rows = [["run", "metric", "values", "max |diff|", "at", "verdict"]]
    for c in checks:
        verdict = "same" if c.max_diff == 0 else ("ok" if c.ok else f"DIFFERS (> {c.tolerance:g})")
        where = c.where if c.max_diff else ""  # every value equal: no place to name
        rows.append([c.run, c.metric, str(c.compared), f"{c.max_diff:.6g}", where, verdict])
    return aligned(rows)


__all__ = [
    "DRAW_OPTIONS",
    "TOLERANCE",
    "TOLERANCE_DB",
    "Check",
    "compare_documents",
    "compare_results",
    "format_checks",
    "recorded_eval_commands",
    "tolerance_for",
    "weight_changes",
]
