"""The ``semcom`` command tree: every subcommand, its options and the function it runs."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .. import __version__
from .args import (
    DATASET_HELP,
    _add_channel_args,
    _add_ci_arg,
    _add_force_arg,
    _add_metrics_arg,
    _add_run_selection_args,
    _add_scheme_args,
    _add_verbose_arg,
    _dataset_arg,
    _level_value,
    _Once,
    _Parser,
    _positive_float,
    _positive_int,
    _snr_value,
)
from .experiments import cmd_experiment_ood, cmd_experiment_perturb
from .listing import cmd_datasets, cmd_schemes
from .results import cmd_compare, cmd_merge, cmd_plot, cmd_reproduce, cmd_table
from .sweep import cmd_bench, cmd_eval
from .transmit import cmd_demo, cmd_transmit


def _add_anchors_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--anchors FILE...`` of plot and table: published curves in the results format."""
    p.add_argument(
        "--anchors", nargs="*", default=[], action=_Once, metavar="FILE",
        help=f"published curves (results/anchors/*.json): {what}",
    )  # fmt: skip


def _add_table_output_args(p: argparse.ArgumentParser, formats: Sequence[str]) -> None:
    """``--format``, ``--out`` and ``--force`` of table and compare."""
    p.add_argument(
        "--format", choices=formats, default=None,
        help="table format (default: by the --out suffix, .md .csv .tex; else markdown)",
    )  # fmt: skip
    p.add_argument("--out", default=None, help="write the table to this file, not stdout")
    _add_force_arg(p, "--out")


def build_parser() -> argparse.ArgumentParser:
    """The ``semcom`` argument parser with every subcommand (each sets ``func``)."""
    from ..eval.plot import DPI, LEGENDS, METRIC_LABELS
    from ..eval.reproduce import TOLERANCE, TOLERANCE_DB
    from ..eval.table import FORMATS
    from ..names import HIGHER_IS_BETTER

    p = _Parser(
        prog="semcom",
        description="Generative semantic communication: send images over simulated wireless "
        "channels with JSCC codecs or a frozen VAE and clean the received latent with a "
        "step-matched diffusion denoiser.",
        epilog="'semcom COMMAND --help' describes each command; README.md and docs/ the rest.",
    )
    p.add_argument("--version", action="version", version=f"semcom {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("transmit", help="send images over a channel, write PNGs + a grid")
    t.add_argument("images", nargs="+", help="image files (PNG/JPEG/BMP/TIFF/WebP/...)")
    _add_scheme_args(t)
    _add_channel_args(t, (0,))
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_force_arg(t, "image in --out")
    _add_verbose_arg(t)
    t.set_defaults(func=cmd_transmit)

    e = sub.add_parser("eval", help="SNR sweep on a dataset -> results JSON")
    _add_scheme_args(e)
    _add_channel_args(e, (-10, -5, 0, 5, 10, 15, 20))
    e.add_argument("--dataset", default="kodak", type=_dataset_arg, help=DATASET_HELP)
    e.add_argument("--out", required=True, help="results JSON path")
    _add_force_arg(e, partial=True)
    e.add_argument("--limit", type=_positive_int, default=None, help="use the first N images")
    e.add_argument(
        "--spread",
        action="store_true",
        help="with --limit: take the N images evenly spaced over the data set instead of the "
        "first N (named sets like cifar10-test are sorted by class)",
    )
    e.add_argument(
        "--crop",
        type=_positive_int,
        default=None,
        metavar="N",
        help="centre-crop every image to N x N (smaller images are padded by reflection)",
    )
    e.add_argument("--batch-size", type=_positive_int, default=8, help="SNRs per batch")
    e.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    _add_verbose_arg(e)
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("demo", help="transmit the embedded sample photos (no arguments needed)")
    _add_channel_args(d, (-5, 0, 5, 10))
    d.add_argument("--out", default="semcom-demo", help="output folder (default ./semcom-demo)")
    _add_force_arg(d, "file in --out")
    d.add_argument("--limit", type=_positive_int, default=4, help="number of sample photos")
    d.add_argument("--size", type=_positive_int, default=256, help="downscale photos to this size")
    _add_metrics_arg(d)
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("schemes", help="list available schemes")
    s.set_defaults(func=cmd_schemes)
    ds = sub.add_parser("datasets", help="list named datasets")
    ds.set_defaults(func=cmd_datasets)

    b = sub.add_parser("bench", help="time encode/channel/denoise/decode per image per scheme")
    _add_scheme_args(b, metrics=False)
    _add_channel_args(b, (0, 15))
    b.add_argument("--dataset", default="kodak", type=_dataset_arg, help=DATASET_HELP)
    b.add_argument("--limit", type=_positive_int, default=2, help="number of images")
    b.add_argument(
        "--crop", type=_positive_int, default=None, metavar="N", help="centre crop (as eval)"
    )
    b.add_argument("--repeats", type=_positive_int, default=1, help="passes over the images")
    b.add_argument(
        "--json",
        nargs="?",
        const="-",
        default=None,
        metavar="PATH",
        help="also write the rows to this JSON file; without PATH print JSON instead of the "
        "table (as transmit --json)",
    )
    _add_force_arg(b, "--json PATH")
    b.set_defaults(func=cmd_bench)

    rp = sub.add_parser(
        "reproduce",
        help="re-run the command a results file records and compare the numbers",
        description="Re-run the command each results file records (meta.command; a merged "
        "file: its sources' commands) and compare every image's value per SNR and metric with "
        "the stored ones (or, for files without per-image values, the means; for 'semcom "
        "experiment' files, every number of a whole re-run). eval seeds each image's noise by "
        "its index, so --limit N checks the first N images of a long sweep exactly. Exit status "
        "1 when a value differs by more than the tolerance.",
    )
    rp.add_argument(
        "results", nargs="+", help="results JSON files from 'semcom eval', 'merge', 'experiment'"
    )
    rp.add_argument(
        "--limit", type=_positive_int, default=None, help="re-run only the first N images"
    )
    rp.add_argument(
        "--tolerance-db", type=float, default=TOLERANCE_DB, metavar="DB",
        help=f"largest difference allowed in dB-valued metrics (PSNR, SNR errors; default "
        f"{TOLERANCE_DB:g})",
    )  # fmt: skip
    rp.add_argument(
        "--tolerance", type=float, default=TOLERANCE, metavar="X",
        help=f"largest difference allowed in the other metrics (default {TOLERANCE:g})",
    )  # fmt: skip
    rp.add_argument("--keep", default=None, metavar="DIR", help="keep the re-runs' files in DIR")
    rp.add_argument("--quiet", action="store_true", help="no progress bar")
    rp.set_defaults(func=cmd_reproduce)

    m = sub.add_parser("merge", help="merge results JSON files of the same data set/channel/seed")
    m.add_argument("results", nargs="+", help="results JSON files from 'semcom eval'")
    m.add_argument("--out", required=True, help="merged results JSON")
    _add_force_arg(m, "--out")
    m.set_defaults(func=cmd_merge)

    pl = sub.add_parser(
        "plot",
        help="draw results JSON files against SNR -> PNG, PDF or SVG",
        description="Draw every run of the files (or those of --scheme) against SNR, published "
        "curves (--anchors) dashed; several --metric: one panel each, side by side. The format "
        "follows the --out suffix: .png, .pdf or .svg (vector; a PDF's text in TrueType fonts).",
    )
    pl.add_argument(
        "results", nargs="*", help="results JSON files from 'semcom eval' (at least one; "
        "before --anchors, which takes every file after it)",
    )  # fmt: skip
    pl.add_argument(
        "--metric", nargs="+", default=["psnr"], choices=list(METRIC_LABELS), metavar="M",
        action=_Once, help=f"one panel per metric, from {' '.join(METRIC_LABELS)}",
    )  # fmt: skip
    _add_anchors_arg(pl, "drawn dashed, '[published]' in the legend")
    _add_run_selection_args(pl, "curves", "legend entry")
    pl.add_argument(
        "--snr", nargs=2, type=_snr_value, default=None, action=_Once, metavar=("LO", "HI"),
        help="draw only the points from LO to HI dB (ends included; the axes fit them, a run "
        "without one is left out)",
    )  # fmt: skip
    pl.add_argument("--title", default=None, help="figure title ('' for none; default: the "
                    "metric, channel and data set)")  # fmt: skip
    pl.add_argument(
        "--legend", choices=LEGENDS, default=None,
        help="legend place (default: inside for one metric, below the panels for several)",
    )  # fmt: skip
    pl.add_argument(
        "--size", nargs=2, type=_positive_float, default=None, metavar=("W", "H"),
        help="figure size in inches (default 7 x 4.5, or 4.2 per panel; a paper's column is "
        "about 3.5 wide)",
    )  # fmt: skip
    _add_ci_arg(pl, "error bars: the t-interval of each mean over the images")
    pl.add_argument(
        "--dpi", type=_positive_int, default=None, metavar="N",
        help=f"a PNG's resolution, dots per inch (default {DPI}; refused for .pdf and .svg, "
        "which are vector)",
    )  # fmt: skip
    pl.add_argument(
        "--out", default="fig.png", help="output figure: .png, .pdf or .svg (default ./fig.png)"
    )
    _add_force_arg(pl, "--out")
    pl.set_defaults(func=cmd_plot)

    ex = sub.add_parser("experiment", help="paper experiments (perturb, ood)")
    exsub = ex.add_subparsers(
        dest="experiment", required=True, parser_class=_Parser, metavar="{perturb,ood}"
    )
    pe = exsub.add_parser(
        "perturb",
        help="paper A §V-D: perturb the matched step t* and the scaling alpha",
        description="Perturb t* and alpha of a diffusion scheme by (1 + delta) at a few SNRs on "
        "the same images and noise; writes a JSON and a figure.",
    )
    _add_scheme_args(pe, default="vae+dm", metrics=False)
    pe.add_argument("--dataset", default="kodak", type=_dataset_arg, help=DATASET_HELP)
    pe.add_argument("--limit", type=_positive_int, default=4, help="number of images")
    pe.add_argument("--crop", type=_positive_int, default=None, metavar="N", help="centre crop")
    pe.add_argument(
        "--snr",
        type=_snr_value,
        nargs="+",
        default=[-10.0, 0.0, 10.0],
        action=_Once,
        help="SNRs, dB",
    )
    pe.add_argument(
        "--deltas",
        type=float,
        nargs="+",
        action=_Once,
        default=None,
        help="relative perturbations (default -0.5 -0.2 -0.1 -0.05 0 0.05 0.1 0.2 0.5)",
    )
    pe.add_argument("--seed", type=int, default=0, help="channel seed (same seed, same noise)")
    pe.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    pe.add_argument("--out", required=True, help="results JSON (the figure goes next to it)")
    _add_force_arg(pe)
    pe.add_argument("--quiet", action="store_true", help="no progress bar")
    pe.set_defaults(func=cmd_experiment_perturb)
    po = exsub.add_parser(
        "ood",
        help="paper A §V-C: in- vs out-of-distribution test sets",
        description="Every scheme on an in-distribution test set (held out from the shipped "
        "checkpoints' training data) and an out-of-distribution one, same channel, seed and "
        "SNRs; writes a JSON (curves, drop, X+dm gain on each set) and a figure.",
    )
    _add_scheme_args(po, default="vae and vae+dm")
    _add_channel_args(po, (-10, -5, 0, 5, 10, 15, 20))
    po.add_argument(
        "--in-data", default="bsds500-val", type=_dataset_arg, help="in-distribution test set"
    )
    po.add_argument(
        "--out-data", default="kodak", type=_dataset_arg, help="out-of-distribution test set"
    )
    po.add_argument("--limit", type=_positive_int, default=8, help="images per test set")
    po.add_argument("--crop", type=_positive_int, default=None, metavar="N", help="centre crop")
    po.add_argument("--out", required=True, help="results JSON (the figure goes next to it)")
    _add_force_arg(po)
    po.add_argument("--quiet", action="store_true", help="no progress bar")
    po.set_defaults(func=cmd_experiment_ood)

    tb = sub.add_parser(
        "table",
        help="print results JSON files as a table (Markdown, CSV or LaTeX)",
        description="One row per run and metric, one column per SNR (the union of the files' "
        "SNR grids; '-' where a run has no value), as Markdown, CSV or a LaTeX tabular "
        "(booktabs); printed, or written to --out. Published curves (--anchors) are rows too, "
        "marked '[published]'; --best ranks the runs measured, not them.",
    )
    tb.add_argument(
        "results", nargs="*", help="results JSON files from 'semcom eval' (at least one; "
        "before --anchors, which takes every file after it)",
    )  # fmt: skip
    tb.add_argument(
        "--metrics", nargs="+", default=["psnr"], choices=list(METRIC_LABELS), metavar="M",
        action=_Once,
        help=f"a row per run and metric, from {' '.join(METRIC_LABELS)}",
    )  # fmt: skip
    _add_ci_arg(tb, "add ± the half-width of the t-interval of each mean over the images")
    _add_anchors_arg(
        tb, "a row per run after the files' (scheme marked '[published]'; SNRs as columns; "
        "never bold by --best)",
    )  # fmt: skip
    _add_run_selection_args(tb, "rows", "scheme cell")
    tb.add_argument(
        "--snr", nargs="+", type=_snr_value, default=None, action=_Once, metavar="DB",
        help="only these SNR columns (dB; default: every SNR of the runs)",
    )  # fmt: skip
    tb.add_argument(
        "--best", action="store_true",
        help="the best value of each metric at each SNR in bold (as printed; Markdown, LaTeX), "
        "of the runs measured: anchors are not ranked",
    )  # fmt: skip
    _add_table_output_args(tb, FORMATS)
    tb.set_defaults(func=cmd_table)

    cp = sub.add_parser(
        "compare",
        help="paired comparison of two runs (same images and channel draws) with confidence "
        "intervals",
        description="Compare run A with run B of results files per SNR: both means, their "
        "difference over the same images (a paired t-interval: the runs of one sweep saw the "
        "same channel draws) and whether it excludes 0. Runs are named scheme or scheme@CBR "
        "(e.g. adjscc+dm@1/16), as 'semcom table' lists them. Markdown, CSV or a LaTeX tabular "
        "(--format, as 'semcom table'); printed, or written to --out.",
    )
    cp.add_argument("results", nargs="+", help="results JSON files from 'semcom eval'")
    cp.add_argument("--scheme", required=True, metavar="A", help="the run judged (scheme[@CBR])")
    cp.add_argument("--against", required=True, metavar="B", help="the reference run")
    cp.add_argument(
        "--metrics",
        nargs="+",
        action=_Once,
        default=["psnr"],
        choices=list(HIGHER_IS_BETTER),
        metavar="M",
        help=f"the metrics to compare, from {' '.join(HIGHER_IS_BETTER)}",
    )
    cp.add_argument("--level", type=_level_value, default=0.95, help="confidence level")
    _add_table_output_args(cp, FORMATS)
    cp.set_defaults(func=cmd_compare)

    from ..train.cli import add_train_parser
    from ..zoo import add_zoo_parser

    add_train_parser(sub)
    add_zoo_parser(sub)
    return p
