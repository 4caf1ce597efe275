"""Plot results JSON (docs/results-format.md) against SNR, optionally with published anchors."""

from __future__ import annotations

import json
import math
import os
import reprlib
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..metrics import in_db
from ..paths import nan_for_null

METRIC_LABELS = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "lpips": "LPIPS (AlexNet, lower is better)",
    "lpips_vgg": "LPIPS (VGG, lower is better)",
    "dists": "DISTS (lower is better)",
    # runs whose receiver estimated the SNR (--snr-source moment|learned; AWGN, slow fading)
    "snr_est_rmse_db": "SNR estimate RMSE (dB)",
    "snr_est_bias_db": "SNR estimate bias (dB, estimate - true)",
}


def _cbr_label(run: dict) -> str:
    """A run's CBR as ``semcom eval`` and ``table`` print it (``1/16``, ``0.08335``); ""
    without one."""
    from ..channels import format_cbr

    cbr = run.get("cbr")
    return run.get("cbr_str") or (format_cbr(cbr) if cbr is not None else "")


def load_results(path: str | os.PathLike[str]) -> dict:
    """Read and check a results JSON file; ``ValueError`` naming the file if it is not one
    (:func:`check_results`: the fields the readers rely on, naming the run and field)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"{p}: no such results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a results JSON file ({e})") from None
    if isinstance(doc, dict) and doc.get("experiment") and not isinstance(doc.get("runs"), list):
        figure = p.with_suffix(".png")
        raise ValueError(
            f"{p}: a 'semcom experiment {doc['experiment']}' file, not an eval sweep: its figure "
            f"is {figure}" + ("" if figure.exists() else " (not found)")
        )
    check_results(doc, str(p))
    for run in doc["runs"]:
        # a metric that could not be computed is written as null: NaN again for the readers
        for k, v in run.items():
            if k != "snr_db" and isinstance(v, list):
                run[k] = nan_for_null(v)
    return doc


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def check_results(doc: object, name: str) -> None:
    """``ValueError`` (led by ``name``, then the run's index and scheme and the field) unless
    ``doc`` has the structure of a results document that :func:`load_results`' readers (table,
    plot, merge, compare, reproduce) rely on, as :func:`.sweep.summarize` writes it.

    Each run: ``scheme`` a string; ``snr_db`` a list of finite numbers; every other list (the
    metrics, ``seconds_per_image``, ...) one number or null per SNR; ``cbr`` a finite number or
    null; ``n_images`` a positive integer; ``counts`` per SNR; ``per_image`` (written since
    per-image values were recorded; older files and published anchors have none) its
    ``images`` names (``n_images`` of them) and per metric one list per SNR of one number or
    null per image. Optional fields may be absent."""
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise ValueError(f"{name}: not a semcom results file (no 'runs' list)")
    for key in ("dataset", "channel", "meta"):
        if key in doc and not isinstance(doc[key], dict):
            raise ValueError(f"{name}: {key!r} is {reprlib.repr(doc[key])}, not an object")
    for i, run in enumerate(doc["runs"]):
        if not isinstance(run, dict) or "scheme" not in run or "snr_db" not in run:
            raise ValueError(f"{name}: run {i} has no 'scheme' and 'snr_db' (not a results file?)")
        if not isinstance(run["scheme"], str) or not run["scheme"]:
            shown = reprlib.repr(run["scheme"])
            raise ValueError(f"{name}: run {i}: 'scheme' is {shown}, not a name")
        _check_run(run, f"{name}: run {i} ({run['scheme']})")


def _check_run(run: dict, where: str) -> None:
    """:func:`check_results` of one run (with a ``scheme`` and ``snr_db``); ``where`` leads
    the message."""

    def bad(field: str, what: str, value: object) -> ValueError:
        return ValueError(f"{where}: {field} is {reprlib.repr(value)}, not {what}")

    snrs = run["snr_db"]
    if not isinstance(snrs, list):
        raise bad("'snr_db'", "a list of SNRs in dB", snrs)
    for j, s in enumerate(snrs):
        if not (_number(s) and math.isfinite(s)):
            raise bad(f"snr_db[{j}]", "a finite number of dB", s)

    def per_snr(field: str, values: object) -> None:
        if not isinstance(values, list) or len(values) != len(snrs):
            raise bad(field, f"a list of {len(snrs)} values (one per SNR of snr_db)", values)
        for j, v in enumerate(values):
            if not (v is None or _number(v)):
                raise bad(f"{field}[{j}]", "a number or null", v)

    cbr = run.get("cbr")
    if cbr is not None and not (_number(cbr) and math.isfinite(cbr)):
        raise bad("'cbr'", "a finite number (or null)", cbr)
    if run.get("cbr_str") is not None and not isinstance(run["cbr_str"], str):
        raise bad("'cbr_str'", "a string", run["cbr_str"])
    n = run.get("n_images")
    if "n_images" in run and not (isinstance(n, int) and not isinstance(n, bool) and n > 0):
        raise bad("'n_images'", "a positive integer", n)
    for k, v in run.items():  # the metrics, seconds_per_image, ...: one value per SNR
        if (
            k in METRIC_LABELS
            or k == "seconds_per_image"
            or (isinstance(v, list) and k != "snr_db")
        ):
            per_snr(repr(k), v)
    for k in ("info", "counts", "weights"):
        if k in run and not isinstance(run[k], dict):
            raise bad(repr(k), "an object", run[k])
    for k, v in run.get("counts", {}).items():
        per_snr(f"counts[{k!r}]", v)
    if "per_image" not in run:  # written before per-image values were recorded
        return
    per = run["per_image"]
    if not isinstance(per, dict):
        raise bad("'per_image'", "an object", per)
    if not per:
        return
    images = per.get("images")
    if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
        raise bad("per_image['images']", "a list of image names", images)
    if n is not None and len(images) != n:
        raise ValueError(f"{where}: per_image['images'] names {len(images)} images, n_images {n}")
    for k, v in per.items():
        if k == "images":
            continue
        if not isinstance(v, list) or len(v) != len(snrs):
            raise bad(f"per_image[{k!r}]", f"a list of {len(snrs)} lists (one per SNR)", v)
        for j, row in enumerate(v):
            if not isinstance(row, list) or len(row) != len(images):
                raise bad(f"per_image[{k!r}][{j}]", f"{len(images)} values (one per image)", row)
            for m, x in enumerate(row):
                if not (x is None or _number(x)):
                    raise bad(f"per_image[{k!r}][{j}][{m}]", "a number or null", x)


def data_label(dataset: dict) -> str:
    """The images a results file was measured on, for a figure title: e.g. ``kodak (24
    images)`` or ``kodak (4 images, 256x256 crops, spread)``."""
    n = dataset.get("n_images")
    parts = [f"{n} images" if n is not None else "? images"]
    if dataset.get("crop"):
        parts.append(f"{dataset['crop']}x{dataset['crop']} crops")
    if dataset.get("spread"):
        parts.append("spread")
    return f"{dataset.get('name', '?')} ({', '.join(parts)})"


def plot_results(
    files: Sequence[str | os.PathLike[str]],
    metric: str = "psnr",
    out: str | os.PathLike[str] = "fig.png",
    anchors: Sequence[str | os.PathLike[str]] = (),
    title: str | None = None,
    ci: float | None = None,
) -> Path:
    """Draw every run of every file as ``metric`` vs SNR (one line per scheme/CBR) -> PNG.

    Anchor files (published curves in the same format) are drawn dashed, labelled with their
    source. Runs without ``metric`` are skipped; if nothing is left a ``ValueError`` is raised.
    ``ci``: a confidence level: runs with per-image values get error bars of the t-interval of
    each mean over the images (:func:`.stats.mean_interval`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .stats import mean_interval, per_snr

    if metric not in METRIC_LABELS:
        raise ValueError(f"unknown metric {metric!r}; choose from {', '.join(METRIC_LABELS)}")
    # every file read (and checked) before the figure exists: a bad file leaves none open
    loaded = [(f, load_results(f), style) for group, style in ((files, "-"), (anchors, "--"))
              for f in group]  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n = 0
    markers = "osD^v<>pX*h"
    channels, data, names = set(), set(), set()
    for f, doc, style in loaded:
        channels.add(doc.get("channel", {}).get("name", "?"))
        name = doc.get("dataset", {}).get("name", "?")
        if style == "-":  # what our runs saw (anchors carry the papers' own)
            data.add(data_label(doc.get("dataset", {})))
            names.add(name)
        elif names and name not in names:  # a paper's curve on other images
            warnings.warn(
                f"anchor {f} was measured on {name}, the results on "
                f"{', '.join(sorted(names))}: not the same images",
                stacklevel=2,
            )
        for run in doc["runs"]:
            ys = run.get(metric)
            if not ys:
                continue
            pts = [(s, y) for s, y in zip(run["snr_db"], ys, strict=True) if y is not None]
            if not pts:
                continue
            label = run["scheme"]
            cbr = _cbr_label(run)
            if cbr:
                label += f" (CBR {cbr})"
            if style == "--":
                label += " [published]"
            xs, vals = zip(*pts, strict=True)
            marker = markers[n % len(markers)]
            per = per_snr(run, metric)
            if ci is not None and per:
                yerr = [mean_interval(per[x], ci).half_width if x in per else 0 for x in xs]
                ax.errorbar(xs, vals, yerr=yerr, fmt=style, marker=marker, label=label, ms=4,
                            capsize=2)  # fmt: skip
            else:
                ax.plot(xs, vals, style, marker=marker, label=label, ms=4)
            n += 1
    if n == 0:
        plt.close(fig)
        raise ValueError(f"no run in the given files has metric {metric!r}")
    if len(data) > 1:  # drawn together, yet not on the same images
        warnings.warn(
            f"the files were evaluated on different images ({'; '.join(sorted(data))}): their "
            "curves are not comparable point by point",
            stacklevel=2,
        )
    ax.set_xlabel("SNR (dB)" + (f"; bars: {100 * ci:g} % t-interval over images" if ci else ""))
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.grid(True, alpha=0.3)
    ax.set_title(
        textwrap.fill(
            title
            or f"{METRIC_LABELS[metric]} vs SNR, channel: {', '.join(sorted(channels))}; "
            f"data: {'; '.join(sorted(data))}",
            100,
        ),
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, out)


def save_figure(fig, out: str | os.PathLike[str]) -> Path:
    """Lay out, write ``fig`` as PNG to ``out`` exactly (atomically, parents created, 120 dpi;
    whatever its suffix), close it."""
    import matplotlib.pyplot as plt

    from ..paths import atomic_path

    fig.tight_layout()
    path = Path(out)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return path


def _with_intervals(
    cells: list[str], snrs: Sequence[float], run: dict, metric: str, level: float, nd: int
) -> list[str]:
    """``cells`` (one per SNR of the table) with the interval of each mean over the images:
    ``± half-width`` (t-interval); the SNR-estimate RMSE as ``[low, high]``
    (:func:`.stats.rms_interval`), its bias ``±`` from the per-image errors."""
    from .stats import mean_interval, per_snr, rms_interval

    by_snr = per_snr(run, "snr_error_db" if metric.startswith("snr_est") else metric)
    if not by_snr:
        return cells
    out = []
    for c, s in zip(cells, snrs, strict=True):
        if c == "-":
            out.append(c)
        elif metric == "snr_est_rmse_db":
            _, low, high = rms_interval(by_snr[s], level)
            out.append(c if math.isnan(high) else f"{c} [{low:.{nd}f}, {high:.{nd}f}]")
        else:
            hw = mean_interval(by_snr[s], level).half_width
            out.append(c if math.isnan(hw) else f"{c} ± {hw:.{nd}f}")
    return out


def results_table(
    files: Sequence[str | os.PathLike[str]],
    metrics: Sequence[str] = ("psnr",),
    digits: int = 2,
    ci: float | None = None,
) -> str:
    """A Markdown table of every run of ``files``: one row per scheme/CBR and metric (led by
    the file's name when there are several), one column per SNR (the union of the files' SNR
    grids; ``-`` where a run has no value).

    ``ci``: a confidence level (e.g. 0.95): each mean gets ``± half-width`` of its t-interval
    over the images (:func:`.stats.mean_interval`; the SNR-estimate RMSE gets ``[low,
    high]``), where the run holds per-image values. A run without a metric has no row of it
    (a warning names it)."""
    for m in metrics:
        if m not in METRIC_LABELS:
            raise ValueError(f"unknown metric {m!r}; choose from {', '.join(METRIC_LABELS)}")
    docs = [load_results(f) for f in files]
    snrs = sorted({s for d in docs for r in d["runs"] for s in r["snr_db"]})
    head = ["scheme", "CBR", "metric", *[f"{s:g} dB" for s in snrs]]
    several = len(files) > 1  # a file column tells the files' runs apart
    if several:
        head.insert(0, "file")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, doc in zip(files, docs, strict=True):
        for run in doc["runs"]:
            for m in metrics:
                ys = run.get(m)
                if not ys:
                    continue
                by_snr = dict(zip(run["snr_db"], ys, strict=True))
                nd = digits if in_db(m) else 3
                cells = ["-" if by_snr.get(s) is None else f"{by_snr[s]:.{nd}f}" for s in snrs]
                if ci is not None:
                    cells = _with_intervals(cells, snrs, run, m, ci, nd)
                cbr = _cbr_label(run)
                first = [Path(name).name] if several else []
                lines.append("| " + " | ".join([*first, run["scheme"], cbr, m, *cells]) + " |")
    missing = [m for m in metrics if not any(r.get(m) for d in docs for r in d["runs"])]
    if missing:
        raise ValueError(f"no run in the given files has metric {', '.join(map(repr, missing))}")
    for m in metrics:  # other runs have it: say which rows are left out, not silently
        lacking = [
            f"{name}: run {i} ({run['scheme']})"
            for name, doc in zip(files, docs, strict=True)
            for i, run in enumerate(doc["runs"])
            if not run.get(m)
        ]
        if lacking:
            warnings.warn(f"no {m!r} in {'; '.join(lacking)}: left out of the table", stacklevel=2)
    if ci is not None:
        lines.append(
            f"\n± : half-width of the {100 * ci:g} % t-interval of the mean over the images; "
            "[low, high]: the RMSE's interval (square roots of the mean square's); runs "
            "written without per-image values show the mean alone"
        )
    return "\n".join(lines)
