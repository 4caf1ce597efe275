"""Confidence intervals over images and paired comparisons of two runs of a results file.

A sweep scores each image once per SNR (one channel draw), so the spread of a run's mean comes
from the images and their draws together; a t-interval over the per-image values
(``per_image`` in a results run, :func:`semcom.eval.sweep.summarize`) covers both. Two schemes
of one sweep saw the same images *and* the same channel draws (:func:`.sweep.image_seed`), so
their difference is judged on per-image differences (a paired t-interval): much tighter than
two separate intervals, because most of the spread is the image, which both share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

from ..channels import format_cbr, parse_cbr
from ..names import HIGHER_IS_BETTER
from .sweep import RunKey


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(p, df))


@dataclass(frozen=True)
class Interval:
    """A mean and the half-width of its two-sided confidence interval (NaN below 2 values)."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        """The interval's lower end, ``mean - half_width``."""
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        """The interval's upper end, ``mean + half_width``."""
        return self.mean + self.half_width


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")


def mean_interval(values: Sequence[float | None], level: float = 0.95) -> Interval:
    """Mean of ``values`` (``None`` / NaN left out) with its Student-t interval at ``level``."""
    _check_level(level)
    v = [float(x) for x in values if x is not None and not math.isnan(x)]
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    mean = math.fsum(v) / n
    if n < 2:
        return Interval(mean, math.nan, n)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
    return Interval(mean, t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n), n)


def rms_interval(values: Sequence[float | None], level: float = 0.95) -> tuple[float, float, float]:
    """Root mean square of ``values`` with an interval: the square roots of the t-interval of
    the mean square (approximate: squares are skewed) -> ``(rms, low, high)``."""
    iv = mean_interval([None if v is None else v * v for v in values], level)
    return math.sqrt(iv.mean), math.sqrt(max(iv.low, 0.0)), math.sqrt(iv.high)


def _have(x: float | None) -> TypeGuard[float]:
    """Whether a per-image value is there (not None, not NaN)."""
    return x is not None and not math.isnan(x)


def paired_interval(
    a: Sequence[float | None], b: Sequence[float | None], level: float = 0.95
) -> Interval:
    """Mean of the differences ``a[i] - b[i]`` with its interval (pairs with a missing value
    left out): the paired t-interval."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True) if _have(x) and _have(y)]
    return mean_interval(diffs, level)


def run_label(run: dict) -> str:
    """``scheme@CBR`` of a results run (``scheme`` when it has no CBR), as ``semcom eval``
    names its curves (:class:`.sweep.RunKey`)."""
    return RunKey(run["scheme"], run.get("cbr")).label


# a nominal CBR (``vae@1/12``) finds a run whose measured CBR is this close, relatively: TAEF2's
# carries 16 channel uses of side information and pads to a multiple of 8 pixels (0.08335 on
# Kodak, 0.08464 on 64 px crops, 0.08642 on BSDS500's 481 x 321 photos, 0.0885 on 32 px
# crops), while the CBRs in use (1/6, 1/8, 1/12, 1/16, ...) are at least 25 % apart; a label
# near two runs is refused as ambiguous
NOMINAL_CBR = 0.1


def find_runs(docs: Sequence[tuple[str, dict]], label: str) -> list[tuple[str, dict, dict]]:
    """Every ``(file name, document, run)`` of ``docs`` that holds the run named ``label``
    (``scheme`` or ``scheme@CBR``, e.g. ``adjscc+dm@1/16``), in file order. A
    CBR matches a run's printed label, else (no such run) its measured CBR within
    :data:`NOMINAL_CBR`. ``ValueError`` lists the runs when the label names none or several
    (without a CBR, or a CBR near several)."""
    scheme, _, cbr_text = label.partition("@")
    target = float(parse_cbr(cbr_text)) if cbr_text else None
    # a CBR as the labels print it: 4 significant digits when it is no small fraction
    printed = format_cbr(target) if target is not None else None

    def matches(run: dict, near: bool) -> bool:
        if run["scheme"] != scheme:
            return False
        if target is None:
            return True
        cbr = run.get("cbr")
        if cbr is None:
            return False
        return abs(cbr - target) <= NOMINAL_CBR * target if near else format_cbr(cbr) == printed

    exact = any(matches(r, False) for _, d in docs for r in d["runs"])
    found = [(n, d, r) for n, d in docs for r in d["runs"] if matches(r, not exact)]
    if not found:
        have = sorted({run_label(r) for _, d in docs for r in d["runs"]})
        held = f"they hold: {', '.join(have)}" if have else "they hold no runs"
        raise ValueError(f"no run {label!r} in the given files; {held}")
    labels = sorted({run_label(r) for _, _, r in found})
    if len({(r["scheme"], r.get("cbr")) for _, _, r in found}) > 1:
        raise ValueError(
            f"{label!r} names several runs ({', '.join(labels)}): give the CBR as printed, "
            f"e.g. {labels[0]!r}"
        )
    return found


def find_run(docs: Sequence[tuple[str, dict]], label: str) -> tuple[str, dict, dict]:
    """The run named ``label`` (:func:`find_runs`) in the last file holding it, as in
    ``semcom merge``."""
    return find_runs(docs, label)[-1]


def _per_image(run: dict, label: str) -> dict:
    per = run.get("per_image")
    if not per:
        raise ValueError(
            f"run {label!r} has no per-image values (a results file written before they were "
            "recorded, or merged from one): re-run its 'semcom eval' to compare it"
        )
    return per


@dataclass(frozen=True)
class Comparison:
    """One metric at one SNR: both runs' means and the paired interval of ``a - b``."""

    snr_db: float
    metric: str
    mean_a: float
    mean_b: float
    diff: Interval

    @property
    def verdict(self) -> str:
        """:func:`favoured` by the difference (direction from :data:`HIGHER_IS_BETTER`)."""
        return favoured(self.diff, HIGHER_IS_BETTER.get(self.metric, True))


def favoured(diff: Interval, higher_is_better: bool) -> str:
    """Which side an interval of ``a - b`` favours: ``"a"`` / ``"b"`` when it excludes 0 in
    that side's favour, else ``"tie"`` (also without an interval: fewer than 2 values)."""
    if math.isnan(diff.half_width):
        return "tie"
    if diff.low > 0:
        return "a" if higher_is_better else "b"
    if diff.high < 0:
        return "b" if higher_is_better else "a"
    return "tie"


def per_snr(run: dict, key: str) -> dict[float, list]:
    """A run's per-image values of ``key`` (a metric, or ``snr_error_db``) by SNR; empty when
    the run holds none (written before they were recorded)."""
    values = run.get("per_image", {}).get(key)
    return dict(zip(run["snr_db"], values, strict=True)) if values else {}


def per_image_key(metric: str) -> str:
    """The ``per_image`` entry a mean of ``metric`` is computed from: the SNR estimate's RMSE
    and bias come from the per-image errors ``snr_error_db``, the metrics from themselves."""
    return "snr_error_db" if metric.startswith("snr_est_") else metric


def metric_interval(
    values: Sequence[float | None], metric: str, level: float = 0.95
) -> tuple[float, float, float]:
    """The interval of a mean of ``metric`` over one SNR's per-image ``values`` (from
    :func:`per_image_key`): ``(low, high, half_width)``. The t-interval of the mean
    (:func:`mean_interval`), the RMSE's from :func:`rms_interval` (asymmetric: ``half_width``
    NaN); NaN bounds below 2 values."""
    if metric == "snr_est_rmse_db":
        _, low, high = rms_interval(values, level)
        return low, high, math.nan
    iv = mean_interval(values, level)
    return iv.low, iv.high, iv.half_width


def compare_runs(
    run_a: dict,
    run_b: dict,
    metrics: Sequence[str],
    level: float = 0.95,
    labels: tuple[str, str] = ("a", "b"),
) -> list[Comparison]:
    """Paired comparison of two results runs over the SNRs both hold, per metric.

    The runs must hold ``per_image`` values of the same images (by name, in any order);
    ``ValueError`` says what is missing. An image without a value (None / NaN) in either run
    is left out of both means and of the interval, so ``mean_a - mean_b`` is the paired mean
    difference.
    """
    _check_level(level)
    pa, pb = _per_image(run_a, labels[0]), _per_image(run_b, labels[1])
    for label, per in zip(labels, (pa, pb), strict=True):
        if len(set(per["images"])) != len(per["images"]):
            raise ValueError(f"run {label!r} names an image twice: its images cannot be paired")
    if sorted(pa["images"]) != sorted(pb["images"]):
        only_a = sorted(set(pa["images"]) - set(pb["images"]))
        only_b = sorted(set(pb["images"]) - set(pa["images"]))
        raise ValueError(
            f"{labels[0]} and {labels[1]} scored other images (only in {labels[0]}: "
            f"{only_a[:3]}{'...' if len(only_a) > 3 else ''}; only in {labels[1]}: "
            f"{only_b[:3]}{'...' if len(only_b) > 3 else ''}): compare runs over the same images"
        )
    order = [pb["images"].index(name) for name in pa["images"]]
    out = []
    for m in metrics:
        by_a, by_b = per_snr(run_a, m), per_snr(run_b, m)
        if not by_a or not by_b:
            raise ValueError(f"run {labels[0] if not by_a else labels[1]!r} has no per-image {m!r}")
        for snr, a in by_a.items():
            if snr not in by_b:
                continue
            b = [by_b[snr][k] for k in order]
            # both means over the pairs the interval uses (an image missing a value in either
            # run is left out of both), so that A - B is the paired mean difference
            both = [_have(x) and _have(y) for x, y in zip(a, b, strict=True)]
            ma = mean_interval([x if k else None for x, k in zip(a, both, strict=True)]).mean
            mb = mean_interval([y if k else None for y, k in zip(b, both, strict=True)]).mean
            out.append(Comparison(float(snr), m, ma, mb, paired_interval(a, b, level)))
    if not out:
        raise ValueError(f"{labels[0]} and {labels[1]} share no SNR")
    return out


def comparison_table(
    rows: Sequence[Comparison],
    labels: tuple[str, str],
    level: float = 0.95,
    fmt: str = "markdown",
) -> str:
    """:func:`compare_runs` rows as a table: SNR, metric, both means, the difference, its
    interval, the number of paired images and the verdict; the runs are ``A`` and ``B``,
    named by ``labels``. In ``fmt`` (:data:`.table.FORMATS`, written by
    :func:`.table.render_grid`): Markdown (``A = ...`` and ``B = ...`` above the table),
    CSV (the interval's ends in two columns, numbers to 6 significant digits, "" where none,
    the runs' names in the last two columns of every row) or a LaTeX ``tabular`` (``% A =
    ...`` comments above it, numbers in math mode)."""
    from .table import FORMATS, METRIC_NAMES, render_grid

    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; choose from {', '.join(FORMATS)}")
    pct = f"{100 * level:g} %"
    if fmt == "csv":
        head = ["SNR (dB)", "metric", "A", "B", "A - B", f"{pct} CI low", f"{pct} CI high",
                "n", "verdict", "A run", "B run"]  # fmt: skip

        def g(v: float) -> str:
            return "" if math.isnan(v) else f"{v:.6g}"

        body = [
            [f"{r.snr_db:g}", r.metric, g(r.mean_a), g(r.mean_b), g(r.diff.mean),
             g(r.diff.low), g(r.diff.high), str(r.diff.n), _verdict_text(r), *labels]
            for r in rows
        ]  # fmt: skip
        return render_grid(fmt, head, body)
    latex = fmt == "latex"

    def num(v: float, nd: int, sign: str = "") -> str:
        if math.isnan(v):
            return "--" if latex else "-"
        return f"${v:{sign}.{nd}f}$" if latex else f"{v:{sign}.{nd}f}"

    body = []
    for r in rows:
        nd = 2 if r.metric == "psnr" else 4
        ci = f"[{r.diff.low:+.{nd}f}, {r.diff.high:+.{nd}f}]"
        if math.isnan(r.diff.half_width):
            ci = "--" if latex else "-"
        elif latex:
            ci = f"${ci}$"
        snr = f"${r.snr_db:g}$" if latex and r.snr_db < 0 else f"{r.snr_db:g}"
        metric = METRIC_NAMES.get(r.metric, r.metric) if latex else r.metric
        body.append([snr, metric, num(r.mean_a, nd), num(r.mean_b, nd),
                     num(r.diff.mean, nd, "+"), ci, str(r.diff.n), _verdict_text(r)])  # fmt: skip
    if latex:
        pct_tex = pct.replace("%", r"\%")
        head = ["SNR (dB)", "metric", "A", "B", "$A - B$", f"{pct_tex} CI of $A - B$", "$n$",
                "verdict"]  # fmt: skip
        names = [f"% A = {labels[0]}", f"% B = {labels[1]}"]
        return "\n".join([*names, render_grid(fmt, head, body, "rlrrrrrl")])
    head = ["SNR (dB)", "metric", "A", "B", "A − B", f"{pct} CI of A − B", "n", "verdict"]
    return "\n".join([f"A = {labels[0]}", f"B = {labels[1]}", "", render_grid(fmt, head, body)])


def _verdict_text(r: Comparison) -> str:
    """The verdict of a comparison row: which run is better, or none significantly, or no
    interval (below two paired values)."""
    # "tie" means the interval holds 0, not that the means are equal: say so; below two
    # paired values there is no interval to judge by
    if r.diff.n < 2:
        return f"no interval ({r.diff.n} paired value{'s' * (r.diff.n != 1)})"
    return {"a": "A better", "b": "B better", "tie": "not significant"}[r.verdict]


def is_comparison_text(text: str) -> bool:
    """Whether ``text`` starts as :func:`comparison_table` writes a table (any format)."""
    lines = text.split("\n")[:4]
    if lines[0].startswith("SNR (dB),metric,A,B,A - B,"):
        return True
    if len(lines) < 3:
        return False
    if lines[0].startswith("% A = ") and lines[1].startswith("% B = "):
        return lines[2].startswith(r"\begin{tabular}{")
    return (
        len(lines) == 4
        and lines[0].startswith("A = ")
        and lines[1].startswith("B = ")
        and lines[2] == ""
        and lines[3].startswith("| SNR (dB) | metric | A | B |")
    )


__all__ = [
    "Comparison",
    "Interval",
    "compare_runs",
    "comparison_table",
    "favoured",
    "find_run",
    "find_runs",
    "is_comparison_text",
    "mean_interval",
    "metric_interval",
    "paired_interval",
    "per_image_key",
    "per_snr",
    "rms_interval",
    "run_label",
    "t_quantile",
]
