"""Plot results JSON (docs/results-format.md) against SNR, optionally with published anchors."""

from __future__ import annotations

import json
import math
import os
import reprlib
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..paths import nan_for_null

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
    return results_of(read_json(path), path)


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON document of file ``path``; ``ValueError`` naming the file when there is none
    or it is not JSON (the first half of :func:`load_results`)."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"{p}: no such results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a results JSON file ({e})") from None


def results_of(doc: Any, path: str | os.PathLike[str]) -> dict:
    """``doc``, read from results file ``path`` (:func:`read_json`), checked as
    :func:`load_results` does (the second half), its nulls as NaN."""
    p = Path(path)
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

    Each run: ``scheme`` a string; ``snr_db`` a list of distinct finite numbers; every other
    list (the metrics, ``seconds_per_image``, ...) one number or null per SNR; ``cbr`` a
    finite number or null; ``n_images`` a positive integer; ``counts`` per SNR; ``per_image``
    (written since per-image values were recorded; older files and published anchors have
    none) its ``images`` names (``n_images`` of them) and per metric one list per SNR of one
    number or null per image. Optional fields may be absent."""
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
        if s in snrs[:j]:  # the readers key values by SNR: one of the two would be lost
            raise bad(f"snr_db[{j}]", f"a new SNR (snr_db[{snrs.index(s)}] holds it)", s)

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


#: figure formats, chosen by the output's suffix (anything else is written as PNG)
FIGURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}

#: where ``plot`` puts the legend: in the axes, below the panels, or nowhere
LEGENDS = ("inside", "below", "none")

#: what marks a published curve (``--anchors``) in a legend entry or a table's scheme cell
PUBLISHED = " [published]"

#: a PNG's resolution unless ``--dpi`` says (dots per inch)
DPI = 120

#: the most pixels a PNG may have along a side (matplotlib refuses 2^16 and more)
MAX_PIXELS = 2**16 - 1

#: the most pixels a PNG may have in all (2^27: 512 MB of RGBA while it is drawn)
MAX_AREA = 2**27


def anchor_image_warnings(
    results: Sequence[tuple[str, dict]], anchors: Sequence[tuple[str, dict]]
) -> list[str]:
    """What to warn of anchors (``(file name, document)``) measured on other images than the
    ``results`` (a paper's curve beside ours): one message per such anchor file."""
    seen = {doc.get("dataset", {}).get("name", "?") for _, doc in results}
    said = []
    for f, doc in anchors:
        name = doc.get("dataset", {}).get("name", "?")
        if seen and name not in seen:
            said.append(
                f"anchor {f} was measured on {name}, the results on "
                f"{', '.join(sorted(seen))}: not the same images"
            )
    return said


def check_snr_range(snr_range: Sequence[float] | None) -> tuple[float, float] | None:
    """``(lo, hi)`` of ``--snr LO HI`` (dB, finite, ``lo <= hi``) or None; else ``ValueError``."""
    if snr_range is None:
        return None
    if len(snr_range) != 2 or not all(math.isfinite(float(s)) for s in snr_range):
        raise ValueError(f"an SNR range is two finite numbers of dB (LO HI), got {snr_range}")
    lo, hi = map(float, snr_range)
    if lo > hi:
        raise ValueError(f"--snr {lo:g} {hi:g}: LO is above HI; give the range low to high")
    return lo, hi


def check_dpi(dpi: int | None, out: str | os.PathLike[str], size: tuple[float, float]) -> int:
    """The resolution a figure ``out`` of ``size`` (inches) is written at: ``dpi`` (a positive
    integer, for a PNG only: a PDF or SVG is vector, drawn at any size) or :data:`DPI`;
    ``ValueError`` for a vector ``out``, or a PNG over :data:`MAX_PIXELS` a side or
    :data:`MAX_AREA` pixels in all."""
    if dpi is None:
        return DPI
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 1:
        raise ValueError(f"--dpi {dpi!r}: expected a positive integer (dots per inch)")
    fmt = FIGURE_FORMATS.get(Path(out).suffix.lower(), "png")
    if fmt != "png":
        raise ValueError(
            f"--dpi sets a PNG's resolution; {Path(out).name} is a {fmt.upper()}, vector "
            "(sharp at any size): leave --dpi out, or give a .png --out"
        )
    width, height = (int(x * dpi) for x in size)  # truncated, as matplotlib sizes the canvas
    if max(width, height) > MAX_PIXELS or width * height > MAX_AREA:
        raise ValueError(
            f"--dpi {dpi}: a {size[0]:g} x {size[1]:g} in figure would be {width} x {height} "
            f"pixels, over {MAX_PIXELS} a side or {MAX_AREA / 1e6:.0f} megapixels in all: give "
            "a smaller --dpi or --size"
        )
    return dpi


def plot_results(
    files: Sequence[str | os.PathLike[str]],
    metric: str | Sequence[str] = "psnr",
    out: str | os.PathLike[str] = "fig.png",
    anchors: Sequence[str | os.PathLike[str]] = (),
    title: str | None = None,
    ci: float | None = None,
    runs: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    size: tuple[float, float] | None = None,
    legend: str | None = None,
    snr_range: Sequence[float] | None = None,
    dpi: int | None = None,
) -> Path:
    """Draw every run of every file as ``metric`` vs SNR (one line per scheme/CBR, its points
    in SNR order) -> figure ``out`` (:func:`save_figure`: PNG, PDF or SVG by its suffix).

    Several metrics: one panel each, side by side, a run in the same colour and marker in
    every panel. Anchor files (published curves in the same format) are drawn dashed,
    labelled with their source. Runs without ``metric`` (or without a finite value of it)
    are skipped; if nothing is left a ``ValueError`` is raised. ``ci``: a confidence level:
    runs with per-image values get error bars of each mean's interval over the images
    (:func:`.stats.metric_interval`, as ``semcom table --ci``). ``runs``: only these runs, in
    this order, of the files and anchors (``scheme`` or ``scheme@CBR``, as ``semcom compare``
    names them); ``labels``: a run's name -> its legend entry; ``title``: ``""`` for none;
    ``size``: width and height in inches; ``legend``: :data:`LEGENDS` (default ``inside``
    for one metric, ``below`` for several). ``snr_range``: ``(lo, hi)`` dB: only the points
    within it (ends included) are drawn, of the runs and anchors alike; the axes fit what is
    drawn (a curve's points outside are left out, not clipped at the edge), and a run with
    none inside is left out of the legend. ``dpi``: a PNG's resolution (default
    :data:`DPI`; refused for PDF and SVG, :func:`check_dpi`).
    """
    import matplotlib

    from .stats import metric_interval, per_image_key, per_snr
    from .table import run_names, select_runs

    metrics = [metric] if isinstance(metric, str) else list(metric)
    for m in metrics:
        if m not in METRIC_LABELS:
            raise ValueError(f"unknown metric {m!r}; choose from {', '.join(METRIC_LABELS)}")
    if not metrics:
        raise ValueError("no metric to plot")
    legend = legend or ("inside" if len(metrics) == 1 else "below")
    if legend not in LEGENDS:
        raise ValueError(f"unknown legend place {legend!r}; choose from {', '.join(LEGENDS)}")
    width, height = size or ((7.0, 4.5) if len(metrics) == 1 else (4.2 * len(metrics), 4.2))
    dpi = check_dpi(dpi, out, (width, height))
    window = check_snr_range(snr_range)
    # every file read (and checked) before the figure exists: a bad file leaves none open
    loaded = [(f, load_results(f), style) for group, style in ((files, "-"), (anchors, "--"))
              for f in group]  # fmt: skip
    docs = [(str(f), doc) for f, doc, _ in loaded]
    chosen = [run for _, run in select_runs(docs, runs)]
    names = run_names(docs, labels or {})
    line_style = {id(run): style for _, doc, style in loaded for run in doc["runs"]}
    channels, data = set(), set()
    for _, doc, style in loaded:
        channels.add(doc.get("channel", {}).get("name", "?"))
        if style == "-":  # what our runs saw (anchors carry the papers' own)
            data.add(data_label(doc.get("dataset", {})))
    ours = [(str(f), doc) for f, doc, style in loaded if style == "-"]
    published = [(str(f), doc) for f, doc, style in loaded if style == "--"]
    for said in anchor_image_warnings(ours, published):  # a paper's curve on other images
        warnings.warn(said, stacklevel=2)
    fig, axes = new_figure(
        1, len(metrics), figsize=(width, height), squeeze=False,
        layout="constrained" if legend == "below" else None,
    )  # fmt: skip
    markers = "osD^v<>pX*h"
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    order: dict[int, int] = {}  # a run's colour and marker, the same in every panel
    entries: dict[int, tuple[str, object]] = {}  # a run's legend entry, in the order drawn
    for ax, m in zip(axes[0], metrics, strict=True):
        drawn = 0
        for run in chosen:
            ys = run.get(m)
            if not ys:
                continue
            label = _legend_label(run, names.get(id(run)), line_style[id(run)])
            pts, dropped = [], []
            for s, y in zip(run["snr_db"], ys, strict=True):
                if window is not None and not window[0] <= s <= window[1]:
                    continue
                if y is not None and math.isfinite(y):
                    pts.append((s, y))
                elif y is not None and not math.isnan(y):
                    dropped.append(f"{y} at {s:g} dB")
            if dropped:
                warnings.warn(f"{label}: {m} {', '.join(dropped)}: not drawn", stacklevel=2)
            if not pts:
                continue
            xs, vals = zip(*sorted(pts), strict=True)
            k = order.setdefault(id(run), len(order))
            kw = {"color": colors[k % len(colors)], "marker": markers[k % len(markers)],
                  "label": label, "ms": 4}  # fmt: skip
            per = per_snr(run, per_image_key(m)) if ci is not None else {}
            if ci is not None and per:
                lo, hi = [], []
                for x, y in zip(xs, vals, strict=True):
                    low, high, hw = metric_interval(per[x], m, ci) if x in per else (y, y, 0.0)
                    lo.append(hw if not math.isnan(hw) else max(y - low, 0.0))
                    hi.append(hw if not math.isnan(hw) else max(high - y, 0.0))
                yerr = [[0.0 if math.isnan(e) else e for e in lo],
                        [0.0 if math.isnan(e) else e for e in hi]]  # fmt: skip
                (line, *_) = ax.errorbar(xs, vals, yerr=yerr, fmt=line_style[id(run)],
                                         capsize=2, **kw)  # fmt: skip
            else:
                (line,) = ax.plot(xs, vals, line_style[id(run)], **kw)
            entries.setdefault(id(run), (label, line))
            drawn += 1
        if drawn == 0:
            within = f" between {window[0]:g} and {window[1]:g} dB" if window else ""
            raise ValueError(f"no run in the given files has metric {m!r}{within}")
        ax.set_xlabel("SNR (dB)" + (f"; bars: {100 * ci:g} % t-interval over images" if ci else ""))
        ax.set_ylabel(METRIC_LABELS[m])
        ax.grid(True, alpha=0.3)
    if len(data) > 1:  # drawn together, yet not on the same images
        warnings.warn(
            f"the files were evaluated on different images ({'; '.join(sorted(data))}): their "
            "curves are not comparable point by point",
            stacklevel=2,
        )
    what = METRIC_LABELS[metrics[0]] if len(metrics) == 1 else ", ".join(metrics)
    if title is None:
        title = (
            f"{what} vs SNR, channel: {', '.join(sorted(channels))}; "
            f"data: {'; '.join(sorted(data))}"
        )
    if title and len(metrics) == 1:
        axes[0][0].set_title(textwrap.fill(title, 100), fontsize=9)
    elif title:
        fig.suptitle(textwrap.fill(title, 50 * len(metrics)), fontsize=9)
    if legend == "inside":
        axes[0][-1].legend(fontsize=7, loc="best")
    elif legend == "below":
        texts, handles = zip(*entries.values(), strict=True)
        _legend_below(fig, handles, texts, min(len(texts), 3 * len(metrics)))
    return save_figure(fig, out, dpi)


def _legend_below(fig: Figure, handles: Sequence, texts: Sequence[str], ncol: int) -> None:
    """One legend under the panels in at most ``ncol`` columns, fewer (more rows) until it
    fits the figure's width: wider, its outer entries were cut off at the figure's edges."""
    while True:
        leg = fig.legend(handles, texts, loc="outside lower center", ncol=ncol, fontsize=7,
                         frameon=False)  # fmt: skip
        if ncol == 1:
            return
        fig.canvas.draw()
        if leg.get_window_extent().width <= fig.bbox.width:
            return
        leg.remove()
        ncol -= 1


def _legend_label(run: dict, name: str | None, style: str) -> str:
    """A run's legend entry: its ``--label`` text, else scheme (CBR) [published]."""
    if name is not None:
        return name
    label = run["scheme"]
    cbr = _cbr_label(run)
    if cbr:
        label += f" (CBR {cbr})"
    return label + (PUBLISHED if style == "--" else "")


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    figsize: tuple[float, float],
    layout: Literal["constrained", "compressed", "tight"] | None = None,
    **subplots: Any,
) -> tuple[Figure, Any]:
    """``plt.subplots(nrows, ncols, figsize=..., layout=..., **subplots)`` without pyplot: a
    figure on an Agg canvas of its own, so that drawing one from Python neither switches the
    process's backend (a notebook's inline one: ``matplotlib.use("Agg")`` did) nor adds to or
    closes pyplot's figures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig, out: str | os.PathLike[str], dpi: int = DPI) -> Path:
    """Lay out, write ``fig`` to ``out`` exactly (atomically, parents created), close it: PDF
    or SVG by the suffix (:data:`FIGURE_FORMATS`; text as TrueType fonts in a PDF, paths in
    an SVG: no Type 3 fonts, which publishers' PDF checks refuse), else PNG at ``dpi``."""
    import matplotlib
    import matplotlib.pyplot as plt

    from ..paths import atomic_path

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    path = Path(out)
    fmt = FIGURE_FORMATS.get(path.suffix.lower(), "png")
    try:
        with atomic_path(path) as tmp, matplotlib.rc_context({"pdf.fonttype": 42}):
            fig.savefig(tmp, dpi=dpi, format=fmt)
    finally:
        plt.close(fig)
    return path


def __getattr__(name: str) -> Any:
    """``results_table``, which moved to :mod:`semcom.eval.table`: that function, with a
    ``DeprecationWarning`` (looked up on use: :mod:`.table` imports this module)."""
    if name == "results_table":
        warnings.warn(
            "semcom.eval.plot.results_table moved to semcom.eval.table.results_table; import "
            "it from there (this alias will be removed)",
            DeprecationWarning,
            stacklevel=2,
        )
        from .table import results_table

        return results_table
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
