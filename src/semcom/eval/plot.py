"""Plot results JSON files (design.md §3) against SNR, optionally with published anchors."""

from __future__ import annotations

import json
import math
import os
import textwrap
import warnings
from collections.abc import Sequence
from fractions import Fraction
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


def _cbr_label(cbr: float | None) -> str:
    if cbr is None:
        return ""
    return str(Fraction(cbr).limit_denominator(1000))


def load_results(path: str | os.PathLike[str]) -> dict:
    """Read and check a results JSON file; ``ValueError`` naming the file if it is not one."""
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
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise ValueError(f"{p}: not a semcom results file (no 'runs' list)")
    for i, run in enumerate(doc["runs"]):
        if not isinstance(run, dict) or "scheme" not in run or "snr_db" not in run:
            raise ValueError(f"{p}: run {i} has no 'scheme' and 'snr_db' (not a results file?)")
        # a metric that could not be computed is written as null: NaN again for the readers
        for k, v in run.items():
            if k != "snr_db" and isinstance(v, list):
                run[k] = nan_for_null(v)
    return doc


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
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n = 0
    markers = "osD^v<>pX*h"
    channels, data = set(), set()
    for group, style in ((files, "-"), (anchors, "--")):
        for f in group:
            doc = load_results(f)
            channels.add(doc.get("channel", {}).get("name", "?"))
            if style == "-":  # what our runs saw (anchors carry the papers' own)
                data.add(data_label(doc.get("dataset", {})))
            for run in doc["runs"]:
                ys = run.get(metric)
                if not ys:
                    continue
                pts = [(s, y) for s, y in zip(run["snr_db"], ys, strict=True) if y is not None]
                if not pts:
                    continue
                label = run["scheme"]
                cbr = _cbr_label(run.get("cbr"))
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
    high]``), where the run holds per-image values."""
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
                cbr = run.get("cbr_str") or _cbr_label(run.get("cbr"))
                first = [Path(name).name] if several else []
                lines.append("| " + " | ".join([*first, run["scheme"], cbr, m, *cells]) + " |")
    missing = [m for m in metrics if not any(r.get(m) for d in docs for r in d["runs"])]
    if missing:
        raise ValueError(f"no run in the given files has metric {', '.join(map(repr, missing))}")
    if ci is not None:
        lines.append(
            f"\n± : half-width of the {100 * ci:g} % t-interval of the mean over the images; "
            "[low, high]: the RMSE's interval (square roots of the mean square's); runs "
            "written without per-image values show the mean alone"
        )
    return "\n".join(lines)
