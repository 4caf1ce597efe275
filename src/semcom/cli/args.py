"""The command line's parser (one-line usage errors, exit 2, defaults in the help), its argument
types (SNR in dB, CBR, level, positive integer, data set) and the options commands share (channel,
schemes and receivers, metrics, ``--ci``, ``-v``, ``--force``); :class:`CLIError`, the error a
user can fix."""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..channels.cbr import parse_cbr
from ..names import CHANNELS, CSI_MODES, METRICS, SNR_LIMIT_DB

EXIT_USAGE = 2


class CLIError(Exception):
    """An error the user can fix; printed as one line, exit code 2."""


#: what a negative value looks like on the command line: numbers, exponents, fractions, -inf
NEGATIVE_VALUE = re.compile(r"^-(\d+|\d*\.\d+)([eE][-+]?\d+)?(/\d+)?$|^-inf$")


class _Help(argparse.HelpFormatter):
    """Help that shows each option's default (values only: not for flags, ``None`` or an
    option whose help already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        value = action.default
        if (
            not action.option_strings
            or any(value is v for v in (None, False, True, argparse.SUPPRESS))
            or "default" in text
            or isinstance(action, argparse._HelpAction | argparse._VersionAction)
        ):
            return action.help

        def one(v: object) -> str:
            return f"{v:g}" if isinstance(v, float) else str(v)

        shown = " ".join(map(one, value)) if isinstance(value, list | tuple) else one(value)
        return f"{text} (default: {shown})".lstrip() if shown else action.help


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``semcom transmit: error: ...``), exit 2, and
    help that shows the defaults."""

    def __init__(self, *args, **kwargs) -> None:
        # whole option names only: an abbreviation (--ou) in a recorded command would break
        # when a new option shares its prefix, and --resume could not strip it
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)
        # argparse takes "-1/16", "-1e3", "-inf" for unknown options ("--cbr: expected one
        # argument"); read them as (negative) values so the option's own check names them
        self._negative_number_matcher = NEGATIVE_VALUE

    def error(self, message: str):
        msg = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {msg} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but words left over are reported by the (sub)command that was
        given them (``semcom transmit: error: ...``, its own --help named), with a hint when
        they look like a second value of a one-value option (``--cbr 1/16 1/12``)."""
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            parser: argparse.ArgumentParser = self
            while True:  # down to the deepest subcommand given
                subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
                chosen = getattr(ns, subs[0].dest, None) if subs else None
                if chosen not in (subs[0].choices if subs else {}):
                    break
                parser = subs[0].choices[chosen]
            hint = ""
            repeatable = "--scheme" in parser._option_string_actions
            if repeatable and (not extras[0].startswith("-") or NEGATIVE_VALUE.match(extras[0])):
                hint = (
                    "; an option takes its values right after it, and repeatable ones "
                    "(--scheme, --cbr) one value each: --cbr 1/16 --cbr 1/12"
                )
            parser.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return ns


#: ``--dataset``: a named data set in any case (``KODAK`` is kodak, as files record it and merge
#: compares it) or a folder of images (recorded as its absolute path)
DATASET_HELP = "named data set (see 'semcom datasets'; any case) or a folder of images"


def _dataset_arg(text: str) -> str:
    from ..data.datasets import dataset_name, list_datasets

    if text.lower() in list_datasets() and Path(text).is_dir():
        print(
            f"semcom: note: {text!r} is the named data set {text.lower()!r}, not the folder "
            f"of that name here (give it as {'./' + text!r} for the folder)",
            file=sys.stderr,
        )
    return dataset_name(text)


class _Once(argparse.Action):
    """A list option (``--snr 0 10``) given once: argparse kept the last of ``--snr 0 --snr
    10`` alone, a sweep at 10 dB where the user asked for two SNRs (as ``--scheme`` and
    ``--cbr`` are given, each value after its own option); now a usage error."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        before: Any = getattr(namespace, self.dest, None)  # the list an earlier one gave
        if before is not self.default:  # set by an earlier occurrence
            shown = " ".join(
                f"{v:g}" if isinstance(v, float) else str(v) for v in [*before, *values]
            )
            parser.error(
                f"argument {option_string}: given twice (only the last would count); give "
                f"all its values after one {option_string}: {option_string} {shown}"
            )
        setattr(namespace, self.dest, values)


def _snr_value(text: str) -> float:
    """An ``--snr`` value: a finite number of dB within +-``SNR_LIMIT_DB`` (the channels'
    limit, semcom.channels.models: N0 stays far from float32 overflow)."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and abs(v) <= SNR_LIMIT_DB):
        raise argparse.ArgumentTypeError(
            f"invalid SNR {text!r}: expected a number of dB within +-{SNR_LIMIT_DB:g}"
        )
    return v


def _cbr_value(text: str) -> str:
    try:
        parse_cbr(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return text


def _level_value(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"invalid level {text!r}: expected a number in (0, 1)")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _label_value(text: str) -> tuple[str, str]:
    """A ``--label RUN=TEXT`` value -> ``(RUN, TEXT)`` (:func:`semcom.eval.table.split_label`)."""
    from ..eval.table import split_label

    try:
        return split_label(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_run_selection_args(p: argparse.ArgumentParser, what: str, where: str) -> None:
    """``--scheme RUN`` (which runs, in which order) and ``--label RUN=TEXT`` of table / plot;
    ``what``: what a run becomes (rows, curves), ``where``: where its label goes."""
    p.add_argument(
        "--scheme",
        action="append",
        default=None,
        metavar="RUN",
        help=f"only this run (repeat for more; {what} in the order given): scheme or "
        "scheme@CBR, as 'semcom compare' names runs (e.g. adjscc+dm@1/16)"
        + (", of the files and --anchors" if what == "curves" else ""),
    )
    p.add_argument(
        "--label",
        action="append",
        type=_label_value,
        default=None,
        metavar="RUN=TEXT",
        help=f"show run RUN as TEXT in the {where} (repeat for more; e.g. "
        "'adjscc+dm@1/16=ADJSCC + DM (ours)')",
    )


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _add_channel_args(p: argparse.ArgumentParser, snrs: Sequence[float]) -> None:
    """The channel options; ``snrs``: the command's default ``--snr`` grid in dB."""
    p.add_argument("--channel", default="awgn", choices=CHANNELS, help="channel model")
    p.add_argument("--csi", default="perfect", choices=CSI_MODES, help="receiver CSI")
    p.add_argument(
        "--pilots",
        type=_positive_int,
        default=None,
        help="pilot symbols per coherence block, --csi estimated only (default 16; 1 under "
        "rayleigh-fast)",
    )
    p.add_argument(
        "--snr", type=_snr_value, nargs="+", default=[float(x) for x in snrs], action=_Once,
        help="SNR grid, dB (Es/N0)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="channel seed (same seed, same noise)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def _add_scheme_args(
    p: argparse.ArgumentParser, default: str | None = "vae", metrics: bool = True
) -> None:
    from ..names import DM_DECODERS, DM_STOPS, FADING_GRIDS, FADING_VARIANTS, RULES, SNR_SOURCES

    p.add_argument(
        "--scheme",
        action="append",
        default=None,
        help=f"scheme name, repeatable (default: {default}); see 'semcom schemes'",
    )
    p.add_argument(
        "--cbr",
        action="append",
        type=_cbr_value,
        default=None,
        help="CBR (e.g. 1/16) for schemes with variants, repeatable (the JSCC codecs need "
        "one; the separation baselines take any, default 1/16)",
    )
    p.add_argument(
        "--codec",
        default=None,
        metavar="REF",
        help="deepjscc/adjscc (and their +dm) only: this codec checkpoint (a zoo name, a run "
        "folder or a .safetensors file) instead of the shipped one for --cbr",
    )
    g = p.add_argument_group("diffusion receivers (schemes ending in +dm)")
    g.add_argument(
        "--matching",
        choices=RULES,
        default=None,
        help="SNR -> step matching rule (default continuous, paper B eq. 19)",
    )
    g.add_argument("--steps", type=_positive_int, default=None, help="denoiser calls K (default 1)")
    g.add_argument(
        "--fading",
        choices=FADING_VARIANTS,
        default=None,
        help=(
            "fast-fading sampler variant (default naive: the per-image mean level; waterfill /"
            " reference pay with --fading-grid quantile --steps 16, waterfill with"
            " --fading-samples 8 too)"
        ),
    )
    g.add_argument(
        "--fading-grid",
        choices=FADING_GRIDS,
        default=None,
        help="fast fading, waterfill/reference: level grid uniform in schedule time from the "
        "largest element level (time, paper B, default) or through the quantiles of the "
        "element levels",
    )
    g.add_argument(
        "--fading-samples",
        type=_positive_int,
        default=None,
        metavar="N",
        help="fast fading, waterfill/reference: average N independent sampler runs (default 1, "
        "paper B; each run injects fresh noise, the average tends to the posterior mean: "
        "higher PSNR, N x the network calls)",
    )
    g.add_argument(
        "--dm-stop",
        choices=DM_STOPS,
        default=None,
        help="where the reverse process stops: auto (default) = at the training SNR of a JSCC "
        "decoder trained at one SNR (DeepJSCC; continuous matching, per-image SNR), else at the "
        "clean latent; clean = always clean",
    )
    g.add_argument(
        "--dm-decoder",
        default=None,
        metavar="{" + ",".join(DM_DECODERS) + "} or REF",
        help="the decoder after the receiver: auto (default) = a decoder trained behind this "
        "denoiser when in the zoo ('semcom train jscc --behind-dm'), else the codec's own; "
        "base = the codec's own; REF = such a decoder of yours (zoo name, run folder or "
        ".safetensors)",
    )
    g.add_argument(
        "--snr-source",
        choices=SNR_SOURCES,
        default=None,
        help="SNR the receiver uses: known, moment-estimated from the received power (noise "
        "power known), or learned (pilot-free CNN on the received latent)",
    )
    g.add_argument(
        "--denoiser",
        default=None,
        metavar="REF",
        help="denoiser checkpoint (zoo name, run folder or .safetensors) instead of the zoo's "
        "one for the codec",
    )
    g.add_argument(
        "--snr-estimator",
        default=None,
        metavar="REF",
        help="SNR-estimator checkpoint for --snr-source learned (zoo name, run folder or "
        ".safetensors) instead of the zoo's one for the codec",
    )
    if metrics:  # bench and experiment perturb compute their own
        _add_metrics_arg(p)


def _add_verbose_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say, per SNR, what the receiver clamped: deep fades, SNR estimates outside the "
        "estimator's range, SNRs outside the diffusion schedule, separation baselines' fallback "
        "images (counted in the output either way)",
    )


def _add_ci_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--ci",
        nargs="?",
        const=0.95,
        type=_level_value,
        metavar="LEVEL",
        help=f"{what} (level 0.95 unless given)",
    )


def _add_metrics_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics",
        nargs="+",
        action=_Once,
        choices=METRICS,
        default=["psnr", "ssim", "ms_ssim", "lpips"],
        metavar="METRIC",
        help=f"metrics to compute ({' '.join(METRICS)}); default psnr ssim ms_ssim lpips",
    )


def _add_force_arg(
    p: argparse.ArgumentParser, option: str | None = None, partial: bool = False
) -> None:
    """``--force``: of the measuring commands (``option`` None), whose ``--out`` is checked by
    :func:`_results_file` (``partial``: eval's partial file too); else of a command writing
    ``option``, checked by :func:`_replaceable`."""
    help_text = (
        "replace an existing --out that holds other results"
        + (", and a partial file left by another sweep" if partial else "")
        + " (a re-run of the command the file records, whatever the order of its options, "
        "replaces it without --force)"
        if option is None
        else f"replace an existing {option} that this command did not write (e.g. a photo)"
    )
    p.add_argument("--force", action="store_true", help=help_text)
