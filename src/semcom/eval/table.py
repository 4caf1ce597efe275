"""Results JSON (docs/results-format.md) as a table for a paper: Markdown, CSV or LaTeX, one
row per run and metric, one column per SNR, optionally with intervals and the best in bold."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from ..names import in_db
from .plot import METRIC_LABELS, PUBLISHED, _cbr_label, anchor_image_warnings, load_results

FORMATS = ("markdown", "csv", "latex")

#: ``--out`` suffixes that choose the format when ``--format`` is not given
SUFFIX_FORMATS = {".md": "markdown", ".csv": "csv", ".tex": "latex"}

#: metric names as a LaTeX table prints them
METRIC_NAMES = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "lpips": "LPIPS",
    "lpips_vgg": "LPIPS (VGG)",
    "dists": "DISTS",
    "snr_est_rmse_db": "SNR est. RMSE (dB)",
    "snr_est_bias_db": "SNR est. bias (dB)",
}

#: how good a value of a column is (``--best`` bolds the highest score): the highest value, the
#: lowest, or (a bias) the nearest to 0 on either side
SCORE: dict[str, Callable[[float], float]] = {
    "psnr": lambda v: v,
    "ssim": lambda v: v,
    "ms_ssim": lambda v: v,
    "lpips": lambda v: -v,
    "lpips_vgg": lambda v: -v,
    "dists": lambda v: -v,
    "snr_est_rmse_db": lambda v: -v,
    "snr_est_bias_db": lambda v: -abs(v),
}


@dataclass(frozen=True)
class TableRow:
    """One run's one metric: ``values`` per SNR column (NaN where the run has none) and, with
    intervals, ``(low, high, half_width)`` per column (None where it has no per-image values;
    ``half_width`` NaN for an asymmetric interval). ``digits``: decimals shown; ``anchor``: a
    published curve (``--anchors``), not a run of ours (never bold by ``--best``)."""

    file: str
    scheme: str
    cbr: str
    metric: str
    values: list[float]
    bounds: list[tuple[float, float, float] | None]
    digits: int
    anchor: bool = False


def split_label(text: str) -> tuple[str, str]:
    """``RUN=TEXT`` of ``--label`` -> ``(RUN, TEXT)``: split at the first ``=`` outside
    brackets (scheme names such as ``deepjscc[codec=REF]`` hold one); ``ValueError`` when
    either side is empty."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "=" and depth <= 0:
            run, label = text[:i].strip(), text[i + 1 :].strip()
            if run and label:
                return run, label
            break
    raise ValueError(f"invalid label {text!r}: expected RUN=TEXT, e.g. 'adjscc+dm@1/16=ADJSCC+DM'")


def select_runs(
    docs: Sequence[tuple[str, dict]], labels: Sequence[str] | None
) -> list[tuple[str, dict]]:
    """``(file name, run)`` of every run of ``docs`` in file order, or with ``labels`` (runs
    named as ``semcom compare`` names them: ``scheme`` or ``scheme@CBR``) those runs, in the
    order of ``labels`` (each label's runs in file order, a run once); ``ValueError`` from
    :func:`.stats.find_runs` for a label naming no run, or several."""
    from .stats import find_runs

    if labels is None:
        return [(name, run) for name, doc in docs for run in doc["runs"]]
    picked: dict[int, tuple[str, dict]] = {}
    for label in labels:
        for name, _, run in find_runs(docs, label):
            picked.setdefault(id(run), (name, run))
    return list(picked.values())


def run_names(docs: Sequence[tuple[str, dict]], labels: Mapping[str, str]) -> dict[int, str]:
    """``--label RUN=TEXT``: the text of each run named (by ``id`` of the run); ``ValueError``
    for a ``RUN`` naming no run of ``docs``, or several."""
    from .stats import find_runs

    return {id(r): text for label, text in labels.items() for _, _, r in find_runs(docs, label)}


def table_rows(
    files: Sequence[str | os.PathLike[str]],
    metrics: Sequence[str] = ("psnr",),
    digits: int = 2,
    ci: float | None = None,
    runs: Sequence[str] | None = None,
    snrs: Sequence[float] | None = None,
    labels: Mapping[str, str] | None = None,
    anchors: Sequence[str | os.PathLike[str]] = (),
) -> tuple[list[float], list[TableRow]]:
    """The SNR columns (the union of the runs' grids, anchors' included, or ``snrs``) and the
    rows of :func:`results_table` (the anchors' after the files' unless ``runs`` orders
    them)."""
    from .stats import metric_interval, per_image_key, per_snr

    for m in metrics:
        if m not in METRIC_LABELS:
            raise ValueError(f"unknown metric {m!r}; choose from {', '.join(METRIC_LABELS)}")
    ours = [(str(f), load_results(f)) for f in files]
    published = [(str(f), load_results(f)) for f in anchors]
    for said in anchor_image_warnings(ours, published):
        warnings.warn(said, stacklevel=3)
    docs = ours + published
    is_anchor = {id(run) for _, doc in published for run in doc["runs"]}
    chosen = select_runs(docs, runs)
    names = run_names(docs, labels or {})
    # the SNRs of the runs that have rows (not those of a run without these metrics)
    have = sorted({s for _, r in chosen if any(r.get(m) for m in metrics) for s in r["snr_db"]})
    if snrs is None:
        columns = have
    else:
        columns = sorted(set(map(float, snrs)))
        if missing := [s for s in columns if s not in have]:
            held = " ".join(f"{s:g}" for s in have) or "none"
            raise ValueError(
                f"no run has SNR {', '.join(f'{s:g}' for s in missing)} dB (they hold: {held})"
            )
    rows = []
    for name, run in chosen:
        for m in metrics:
            ys = run.get(m)
            if not ys:
                continue
            by_snr = dict(zip(run["snr_db"], ys, strict=True))
            values = [math.nan if by_snr.get(s) is None else float(by_snr[s]) for s in columns]
            per = per_snr(run, per_image_key(m)) if ci is not None else {}
            bounds = [
                metric_interval(per[s], m, ci)
                if ci is not None and s in per and not math.isnan(v)
                else None
                for s, v in zip(columns, values, strict=True)
            ]
            anchor = id(run) in is_anchor
            scheme = names.get(id(run), run["scheme"] + (PUBLISHED if anchor else ""))
            nd = digits if in_db(m) else 3
            rows.append(TableRow(name, scheme, _cbr_label(run), m, values, bounds, nd, anchor))
    missing = [m for m in metrics if not any(r.get(m) for _, r in chosen)]
    if missing:
        raise ValueError(f"no run in the given files has metric {', '.join(map(repr, missing))}")
    for m in metrics:  # other runs have it: say which rows are left out, not silently
        lacking = [
            f"{name}: run {i} ({run['scheme']})"
            for name, doc in docs
            for i, run in enumerate(doc["runs"])
            if any(run is r for _, r in chosen) and not run.get(m)
        ]
        if lacking:
            warnings.warn(f"no {m!r} in {'; '.join(lacking)}: left out of the table", stacklevel=3)
    return columns, rows


def best_cells(rows: Sequence[TableRow]) -> set[tuple[int, int]]:
    """``(row, column)`` of the best value of each metric in each column, at the digits shown
    (values equal as printed are all best), among the runs measured: an anchor's (a published
    curve read off a paper's plot, maybe a bound) is never best, nor is NaN."""
    out = set()
    for m in {r.metric for r in rows if not r.anchor}:
        idx = [i for i, r in enumerate(rows) if r.metric == m and not r.anchor]
        for j in range(len(rows[idx[0]].values)):
            shown = {
                i: round(rows[i].values[j], rows[i].digits)
                for i in idx
                if not math.isnan(rows[i].values[j])
            }
            if shown:
                score = {i: SCORE[m](v) for i, v in shown.items()}
                top = max(score.values())
                out |= {(i, j) for i, v in score.items() if v == top}
    return out


def _markdown_escape(text: str) -> str:
    return text.replace("|", r"\|")


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (unicode kept as it is)."""
    return re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m.group()], text)


def _number(v: float, nd: int, latex: bool) -> str:
    if math.isinf(v):
        return ("-" if v < 0 else "") + (r"\infty" if latex else "inf")
    return f"{v:.{nd}f}"


def _cell(row: TableRow, j: int, bold: bool, latex: bool) -> str:
    """A Markdown or LaTeX cell: the mean (bold if ``bold``), then ``± half-width`` or the
    asymmetric ``[low, high]``; ``-`` (``--``) without a value."""
    v = row.values[j]
    if math.isnan(v):
        return "--" if latex else "-"
    text = _number(v, row.digits, latex)
    if bold:
        text = rf"\mathbf{{{text}}}" if latex else f"**{text}**"
    b, nd = row.bounds[j], row.digits
    if b is not None and not math.isnan(b[2]):
        text += (r" \pm " if latex else " ± ") + f"{b[2]:.{nd}f}"
    elif b is not None and not math.isnan(b[1]):
        text += (r"\ " if latex else " ") + f"[{b[0]:.{nd}f}, {b[1]:.{nd}f}]"
    return f"${text}$" if latex else text


def _notes(rows: Sequence[TableRow], ci: float | None, best: bool) -> list[str]:
    """What the marks of a Markdown / LaTeX table mean."""
    notes = []
    if ci is not None:
        note = f"± : half-width of the {100 * ci:g} % t-interval of the mean over the images"
        if any(r.metric == "snr_est_rmse_db" for r in rows):
            note += "; [low, high]: the RMSE's interval (square roots of the mean square's)"
        pairs = (z for r in rows for z in zip(r.bounds, r.values, strict=True))
        if any(b is None and not math.isnan(v) for b, v in pairs):
            note += "; runs written without per-image values show the mean alone"
        notes.append(note)
    if best:
        notes.append(
            "bold: the best value of each metric at each SNR (as printed)"
            + (f" of the runs measured; the{PUBLISHED} rows are not ranked"
               if any(r.anchor for r in rows) else "")
        )  # fmt: skip
    return notes


def render_grid(
    fmt: str,
    head: Sequence[str],
    body: Sequence[Sequence[str]],
    align: str = "",
    notes: Sequence[str] = (),
) -> str:
    """Cells already in ``fmt``'s form (escaped, LaTeX numbers in math mode) as text: a
    Markdown table (``notes`` below it after a blank line), a CSV (no notes) or a LaTeX
    ``tabular`` with booktabs rules and column alignment ``align`` (``notes`` as ``%``
    comments after it); the writer of ``semcom table`` and ``semcom compare``."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerows([head, *body])
        return buf.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines + (["", *notes] if notes else []))
    if fmt != "latex":
        raise ValueError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")
    lines = [r"\begin{tabular}{" + align + "}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
    lines += [" & ".join(cells) + r" \\" for cells in body]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}", *(f"% {n}" for n in notes)])


def file_labels(files: Sequence[str | os.PathLike[str]]) -> dict[str, str]:
    """How the file column names each of ``files`` (keyed by ``str(file)``): its name, or where
    files of different folders share a name, the shortest end of its absolute path that the
    others' do not share (``anchors/kodak-awgn.json`` beside ``kodak-awgn.json`` of
    ``results/``: ``results/kodak-awgn.json``). One file given twice gets one name."""
    where = {str(f): PurePath(os.path.abspath(f)).parts for f in files}
    paths = set(where.values())

    def label(parts: tuple[str, ...]) -> str:
        for k in range(1, len(parts) + 1):
            if all(other[-k:] != parts[-k:] for other in paths - {parts}):
                return str(PurePath(*parts[-k:]))
        return str(PurePath(*parts))

    return {f: label(parts) for f, parts in where.items()}


def render_table(
    columns: Sequence[float],
    rows: Sequence[TableRow],
    fmt: str = "markdown",
    ci: float | None = None,
    best: bool = False,
    file_column: bool = False,
) -> str:
    """:func:`table_rows`' columns and rows as text in ``fmt`` (:data:`FORMATS`): Markdown
    (notes below it), CSV (numbers to 6 significant digits, an empty cell where none; with
    ``ci`` each SNR's ``low`` and ``high`` columns; no bold) or a LaTeX ``tabular`` (booktabs
    rules, numbers in math mode, notes as ``%`` comments). ``file_column``: lead each row with
    its file's name (:func:`file_labels`: as much of its path as tells it from the others)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "csv":
        if best:
            raise ValueError("--best marks cells in bold, which CSV has not: give a Markdown or "
                             "LaTeX --format")  # fmt: skip
        return render_grid(fmt, *_csv(columns, rows, ci is not None, file_column))
    marked = best_cells(rows) if best else set()
    latex = fmt == "latex"
    text_cols = [*(["file"] if file_column else []), "scheme", "CBR", "metric"]
    files = file_labels([r.file for r in rows])
    snr_head = [(f"${s:g}$" if latex and s < 0 else f"{s:g}") + " dB" for s in columns]
    body = []
    for i, r in enumerate(rows):
        lead = ([files[str(r.file)]] if file_column else []) + [r.scheme, r.cbr]
        if latex:
            cells = [latex_escape(c) for c in lead] + [METRIC_NAMES.get(r.metric, r.metric)]
        else:
            cells = [_markdown_escape(c) for c in [*lead, r.metric]]
        cells += [_cell(r, j, (i, j) in marked, latex) for j in range(len(columns))]
        body.append(cells)
    align = "l" * len(text_cols) + "r" * len(columns)
    return render_grid(fmt, [*text_cols, *snr_head], body, align, _notes(rows, ci, best))


def _csv(
    columns: Sequence[float], rows: Sequence[TableRow], ci: bool, file_column: bool
) -> tuple[list[str], list[list[str]]]:
    """The head and cells of a CSV table: numbers to 6 significant digits, "" where none."""

    def num(v: float) -> str:
        return "" if math.isnan(v) else f"{v:.6g}"

    def bounds(v: float, b: tuple[float, float, float] | None) -> list[str]:
        if b is None:
            return ["", ""]
        low, high = (v - b[2], v + b[2]) if not math.isnan(b[2]) else b[:2]  # around the mean
        return [num(low), num(high)]

    head = (["file"] if file_column else []) + ["scheme", "CBR", "metric"]
    files = file_labels([r.file for r in rows])
    for s in columns:
        head += [f"{s:g} dB", f"{s:g} dB low", f"{s:g} dB high"] if ci else [f"{s:g} dB"]
    body = []
    for r in rows:
        cells = ([files[str(r.file)]] if file_column else []) + [r.scheme, r.cbr, r.metric]
        for v, b in zip(r.values, r.bounds, strict=True):
            cells += [num(v), *bounds(v, b)] if ci else [num(v)]
        body.append(cells)
    return head, body


def results_table(
    files: Sequence[str | os.PathLike[str]],
    metrics: Sequence[str] = ("psnr",),
    digits: int = 2,
    ci: float | None = None,
    fmt: str = "markdown",
    best: bool = False,
    runs: Sequence[str] | None = None,
    snrs: Sequence[float] | None = None,
    labels: Mapping[str, str] | None = None,
    anchors: Sequence[str | os.PathLike[str]] = (),
) -> str:
    """A table of every run of ``files``: one row per scheme/CBR and metric (led by the file's
    name when there are several results or anchors files; by the end of its path that tells
    it from another file of that name: :func:`file_labels`), one column per SNR (the union of
    the files' SNR grids; ``-`` where a run has no value, or a null / NaN one), in ``fmt``
    (:func:`render_table`: ``markdown``, ``csv`` or ``latex``).

    ``anchors``: published curves in the same format (``results/anchors``): a row per run
    and metric after the files' (none for a metric it has not), its scheme marked
    ``[published]`` unless ``labels`` names it, its SNRs among the columns, never bold.

    ``ci``: a confidence level (e.g. 0.95): each mean gets ``± half-width`` of its t-interval
    over the images (:func:`.stats.mean_interval`; the SNR-estimate RMSE gets ``[low,
    high]``), where the run holds per-image values. ``best``: the best value of each metric
    in each SNR column in bold (:func:`best_cells`). ``runs``: only these runs, in this order
    (``scheme`` or ``scheme@CBR``, as ``semcom compare`` names them); ``snrs``: only these
    columns (dB; each held by some run); ``labels``: a run's name -> the text shown for its
    scheme. A run without a metric has no row of it (a warning names it); ``digits``:
    decimals of dB values (others get 3)."""
    columns, rows = table_rows(files, metrics, digits, ci, runs, snrs, labels, anchors)
    several = len(files) > 1 or len(anchors) > 1
    return render_table(columns, rows, fmt, ci, best, file_column=several)


_TABLE_HEAD = re.compile(
    r"^(\| (file \| )?scheme \| CBR \| metric \||(file,)?scheme,CBR,metric(,|$)"
    r"|\\begin\{tabular\}\{l+r*\}$)"
)


def is_table_text(text: str) -> bool:
    """Whether ``text`` starts as :func:`render_table` writes a table (any format)."""
    return bool(_TABLE_HEAD.match(text.split("\n", 1)[0]))


__all__ = [
    "FORMATS",
    "SUFFIX_FORMATS",
    "TableRow",
    "best_cells",
    "file_labels",
    "is_table_text",
    "latex_escape",
    "render_grid",
    "render_table",
    "results_table",
    "select_runs",
    "split_label",
    "table_rows",
]
