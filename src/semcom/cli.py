"""The ``semcom`` command line.

Subcommands: ``transmit``, ``eval``, ``demo``, ``schemes``, ``datasets``, ``bench``,
``experiment``, ``merge``, ``table``, ``compare``, ``plot``, ``train``, ``zoo``. Errors a user can
fix (a corrupt image, a missing data folder, a bad option) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from . import __version__
from .channels import CHANNELS, CSI_MODES, Channel, format_cbr, parse_cbr
from .channels.models import SNR_LIMIT_DB
from .devices import command_args, launch_command, parse_device, without_options
from .link import describe_counts
from .metrics import METRICS
from .paths import MissingResourceError, atomic_path, atomic_write_json, json_text

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

    def error(self, message: str):  # type: ignore[override]
        msg = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {msg} (see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
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
    from .data.datasets import list_datasets
    from .train.cli import data_arg

    if text.lower() in list_datasets() and Path(text).is_dir():
        print(
            f"semcom: note: {text!r} is the named data set {text.lower()!r}, not the folder "
            f"of that name here (give it as {'./' + text!r} for the folder)",
            file=sys.stderr,
        )
    return data_arg(text)


class _Once(argparse.Action):
    """A list option (``--snr 0 10``) given once: argparse kept the last of ``--snr 0 --snr
    10`` alone, a sweep at 10 dB where the user asked for two SNRs (as ``--scheme`` and
    ``--cbr`` are given, each value after its own option); now a usage error."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        before = getattr(namespace, self.dest, None)
        if before is not self.default:  # set by an earlier occurrence
            shown = " ".join(
                f"{v:g}" if isinstance(v, float) else str(v) for v in [*before, *values]
            )
            parser.error(
                f"argument {option_string}: given twice (only the last would count); give "
                f"all its values after one {option_string}: {option_string} {shown}"
            )
        setattr(namespace, self.dest, values)


# ------------------------------------------------------------- argument types
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


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


# --------------------------------------------------------------------- helpers
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
    from .diffusion.registry import DM_DECODERS, DM_STOPS
    from .diffusion.samplers import FADING_GRIDS, FADING_VARIANTS, RULES
    from .estimation import SNR_SOURCES

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
        help="fast fading: level grid uniform in schedule time from the largest element "
        "level (time, paper B, default) or through the quantiles of the element levels",
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


def _channel(args: argparse.Namespace) -> Channel:
    if args.pilots is not None and args.csi != "estimated":
        raise CLIError("--pilots applies to --csi estimated (pilots estimate the channel)")
    source = getattr(args, "snr_source", None) or "known"
    dm = any(n.endswith("+dm") for n in getattr(args, "scheme", None) or ())
    # (without a diffusion scheme, --snr-source is refused as an option none of them takes)
    if args.channel == "rayleigh-fast" and source != "known" and dm:
        raise CLIError(
            f"--snr-source {source} gives one SNR per image; under rayleigh-fast the diffusion "
            "receiver needs each symbol's noise level, which comes from the CSI and N0 "
            "(--snr-source known, with --csi perfect or estimated)"
        )
    return Channel(args.channel, csi=args.csi, pilots=args.pilots)


def _build_schemes(args: argparse.Namespace, device: torch.device):
    """(RunKey, scheme) pairs for every requested scheme x CBR."""
    from .eval.sweep import RunKey
    from .schemes import OPTION_FLAGS, fixed_cbr, get_scheme, list_schemes, run_name

    names = args.scheme or ["vae"]
    cbrs = [parse_cbr(c) for c in args.cbr] if args.cbr else [None]
    options = {
        "matching": getattr(args, "matching", None),
        "steps": getattr(args, "steps", None),
        "fading": getattr(args, "fading", None),
        "fading_grid": getattr(args, "fading_grid", None),
        "fading_samples": getattr(args, "fading_samples", None),
        "dm_stop": getattr(args, "dm_stop", None),
        "dm_decoder": getattr(args, "dm_decoder", None),
        "denoiser_path": getattr(args, "denoiser", None),
        "snr_source": getattr(args, "snr_source", None),
        "estimator_path": getattr(args, "snr_estimator", None),
        "codec_path": getattr(args, "codec", None),
    }
    takes = {s.name: s.options for s in list_schemes()}
    for key in ("codec_path", "denoiser_path", "estimator_path", "dm_decoder"):
        _note_unfinished(options[key], "--" + OPTION_FLAGS.get(key, key).replace("_", "-"))
    fast = getattr(args, "channel", None) == "rayleigh-fast"
    for key in ("fading", "fading_grid", "fading_samples"):
        if options[key] is not None and not fast:  # one level per image: nothing to choose
            where = f"--channel {args.channel}" if hasattr(args, "channel") else "no channel"
            raise CLIError(
                f"--{key.replace('_', '-')} applies to --channel rayleigh-fast (a noise level "
                f"per symbol); with {where} every element has the image's level"
            )
    if options["fading"] in ("waterfill", "reference") and (options["steps"] or 1) == 1:
        print(
            f"semcom: warning: --fading {options['fading']} with one step starts every element "
            "from the largest noise level (all but noise at any SNR: worse than the codec "
            "alone); give --steps 8 or more, best with --fading-grid quantile",
            file=sys.stderr,
        )
    for key, value in options.items():
        # an option none of the asked schemes takes would silently change nothing
        if value is not None and not any(key in takes.get(n, ()) for n in names):
            flag = "--" + OPTION_FLAGS.get(key, key).replace("_", "-")
            which = ", ".join(n for n, opts in takes.items() if key in opts)
            raise CLIError(f"{flag} applies to the schemes {which}; none of them was asked")
    out = []
    for name in names:
        # each scheme gets the options it takes (get_scheme refuses the others)
        mine = {k: v for k, v in options.items() if k in takes.get(name, ())}
        fixed = fixed_cbr(name)
        name_cbrs = cbrs
        if fixed is not None and cbrs != [None]:
            # --cbr picks variants of the other schemes; a fixed-CBR scheme runs once at its own
            # CBR (asked alone at another CBR, the scheme's error says so)
            asked = any(abs(c - fixed) <= 1e-3 * fixed for c in cbrs)
            if asked or len(names) > 1:
                if not asked and getattr(args, "cbr_given", True):  # the demo sets its own
                    print(
                        f"semcom: note: {name} has a fixed CBR of {format_cbr(fixed)}; "
                        "--cbr applies to the other schemes",
                        file=sys.stderr,
                    )
                name_cbrs = [None]
        for cbr in name_cbrs:
            scheme = get_scheme(name, cbr, device, **mine)
            fixed = getattr(scheme, "fixed_cbr", cbr is None)
            if cbr is None and not fixed:  # --codec without --cbr: the checkpoint's CBR
                cbr = getattr(getattr(scheme, "codec", None), "cbr", None)
                default = getattr(scheme, "cbr_value", None)  # separation: any CBR, a default
                if cbr is None and default is not None:
                    print(
                        f"semcom: note: {name} runs at its default CBR "
                        f"{format_cbr(default)} (no --cbr given)",
                        file=sys.stderr,
                    )
            key = RunKey(run_name(name, **mine), None if fixed else cbr)
            if key not in [k for k, _ in out]:
                out.append((key, scheme))
    separation = [k.label for k, sch in out if hasattr(sch, "fallback_image")]
    if getattr(args, "csi", None) == "estimated" and 0 < len(separation) < len(out):
        print(
            "semcom: note: with --csi estimated the analog schemes send their pilots on top of "
            f"--cbr, the separation baselines ({', '.join(separation)}) within it: their "
            "measured CBRs differ (README, Conventions)",
            file=sys.stderr,
        )
    return out


def _note_unfinished(ref: str | None, flag: str) -> None:
    """A note when checkpoint reference ``ref`` is a training run folder whose card says it
    stopped before the end of its schedule (its numbers are an unfinished run's)."""
    card = Path(ref) / "card.json" if ref else None
    if card is None or not card.is_file():
        return
    from .zoo import unfinished

    try:
        where = unfinished(json.loads(card.read_text()))
    except (OSError, ValueError, TypeError, AttributeError):
        return  # the loader says what is wrong with it
    if where:
        print(
            f"semcom: note: {flag} {ref}: a run that has not finished its schedule ({where})",
            file=sys.stderr,
        )


def _snr_list(args: argparse.Namespace) -> list[float]:
    """The ``--snr`` grid in dB (each value checked by argparse), each value once, in order."""
    snrs = [float(s) for s in args.snr]
    unique = list(dict.fromkeys(snrs))
    if len(unique) < len(snrs):
        print("semcom: note: repeated --snr values are sent once", file=sys.stderr)
    return unique


def _output_file(path: str, option: str = "--out") -> Path:
    """``path`` checked before any work: not a folder, nor a device, pipe or socket (the
    file is replaced by a rename: ``/dev/null`` would become a regular file, and reading
    ``/dev/stdout`` to see what it holds waits for ever), its folder created and writable."""
    if not path:
        raise CLIError(f"{option} is empty: give a file name")
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{option} {path!r} is a folder: give a file name inside it")
    if p.exists() and not p.is_file():
        raise CLIError(
            f"{option} {path!r} is not a regular file (a device, pipe or socket): give a file name"
        )
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = "a part of it is a file" if isinstance(e, FileExistsError) else e.strerror
        raise CLIError(f"{option} {path!r}: cannot create its folder: {why}") from e
    if not os.access(p.parent, os.W_OK):
        raise CLIError(f"{option} {path!r}: its folder is not writable")
    return p


def _json_of(path: Path) -> object:
    """``path``'s JSON, or None when it is not a readable JSON file."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _is_results(path: Path) -> bool:
    """A semcom results JSON (``eval``, ``merge`` or ``experiment``)."""
    doc = _json_of(path)
    return isinstance(doc, dict) and (
        isinstance(doc.get("runs"), list) or _command_of(doc) is not None
    )


def _is_bench(path: Path) -> bool:
    """A JSON file ``semcom bench --json PATH`` wrote (its rows, in a list before 2026-11-30)."""
    doc = _json_of(path)
    rows = doc.get("rows") if isinstance(doc, dict) and "settings" in doc else doc
    return isinstance(rows, list) and all(isinstance(r, dict) and "total" in r for r in rows)


def _png_software(path: Path) -> str:
    """The Software text chunk of image ``path`` ("" when none or not an image)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return str(im.info.get("Software", ""))
    except OSError:
        return ""


def _is_figure(path: Path) -> bool:
    """A PNG that matplotlib wrote (every semcom figure)."""
    return "matplotlib" in _png_software(path).lower()


#: the PNG text chunk ``transmit`` / ``demo`` write into their images and grids, by which a
#: re-run recognises its own files (anything else in the folder is kept unless --force)
SOFTWARE_TAG = "semcom"


def _png_info():
    """PNG metadata marking an image as written by semcom (:data:`SOFTWARE_TAG`)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", f"{SOFTWARE_TAG} {__version__}")
    return info


def _is_ours_png(path: Path) -> bool:
    """A PNG that ``semcom transmit`` / ``demo`` wrote (its Software chunk)."""
    return _png_software(path).startswith(SOFTWARE_TAG + " ")


def _is_table(path: Path) -> bool:
    """A ``table.txt`` that ``semcom demo`` wrote (its header row)."""
    try:
        with open(path, encoding="utf-8") as f:
            head = f.readline().split()
    except (OSError, UnicodeDecodeError):
        return False
    return head[:4] == ["image", "scheme", "cbr", "snr_db"]


def _refuse_foreign(paths: Sequence[Path], ours, what: str) -> None:
    """``CLIError`` naming the existing ``paths`` that ``ours(path)`` does not claim (files
    this command would replace but did not write, e.g. a user's photo of the same name)."""
    foreign = [p for p in paths if p.exists() and not ours(p)]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise CLIError(
            f"{str(foreign[0])!r}{more} already exists and is not {what}: give another --out, "
            "or --force to replace it"
        )


def _replaceable(name: str, option: str, force: bool, ours, what: str) -> Path:
    """Output file ``name`` checked as by :func:`_output_file`, and refused when it exists
    and ``ours(path)`` says it is not ``what`` (e.g. an input photo given as ``--out``),
    unless ``force``."""
    path = _output_file(name, option)
    if path.exists() and not force and not ours(path):
        raise CLIError(
            f"{option} {str(path)!r} already exists and is not {what}: give another name, "
            "or --force to replace it"
        )
    return path


def _recorded_command(path: Path) -> str | None:
    """The command a semcom results JSON records (``meta.command`` of ``eval``, ``command``
    of the experiments); None when ``path`` is not such a file."""
    return _command_of(_json_of(path))


def _command_of(doc: object) -> str | None:
    """:func:`_recorded_command` of a document already read."""
    if not isinstance(doc, dict):
        return None
    meta = doc.get("meta")
    cmd = meta.get("command") if isinstance(meta, dict) else doc.get("command")
    return cmd if isinstance(cmd, str) else None


def _results_file(args: argparse.Namespace) -> Path:
    """``--out`` of a command that measures (``eval``, ``experiment perturb`` / ``ood``),
    checked before any work as :func:`_output_file`. An existing file is replaced only by a
    re-run of the command it records (reproducing it) or with ``--force``: the results of
    another command, maybe hours of measurements, are never overwritten by accident."""
    p = _output_file(args.out)
    if args.force or not p.exists():
        return p
    recorded = _recorded_command(p)
    if recorded is not None and _same_measurement(recorded, args):
        return p
    held = f"the results of `{recorded}`" if recorded else "a file that is not semcom's results"
    raise CLIError(
        f"--out {args.out!r} already holds {held}: give another --out, or --force to replace it"
    )


# options that do not change what a command measures: a re-run differing only in them is
# the recorded command again (the file it wrote is the one at hand, whatever --out says)
_PRESENTATION = frozenset(
    {"out", "force", "quiet", "verbose", "threads", "argv", "func", "summary"}
)


def _experiment_files(args: argparse.Namespace) -> Path:
    """``--out`` of ``semcom experiment`` checked as :func:`_results_file`, and the figure it
    writes next to it (``--out`` with ``.png``), refused when it exists and is not a figure
    (a photo of that name) unless ``--force``. Returns the figure's path."""
    if Path(args.out).suffix.lower() == ".png":
        raise CLIError(
            f"--out {args.out!r} names the results JSON, and its figure goes next to it as "
            "NAME.png: give a .json name"
        )
    _results_file(args)
    fig = str(Path(args.out).with_suffix(".png"))
    return _replaceable(fig, "the figure", args.force, _is_figure, "a figure")


def _same_measurement(recorded: str, args: argparse.Namespace) -> bool:
    """True when the command line ``recorded`` (a results file's) parses to the options of
    ``args`` but for :data:`_PRESENTATION` (order, spelling, ``--out``'s path, output noise)."""
    import contextlib
    import io

    from .train.cli import parse_args

    words = command_args(recorded)
    if not words:
        return False
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            old = vars(parse_args(build_parser(), words))
    except SystemExit:  # no longer parses: not today's command
        return False
    new = vars(args)
    keys = ({*old} | {*new}) - _PRESENTATION
    return all(old.get(k) == new.get(k) for k in keys)


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


def _fmt(col: str, v: object) -> str:
    if col == "snr_db" and isinstance(v, float):
        return f"{v:g}"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _table(rows: list[dict], metrics: Sequence[str]) -> str:
    cols = ["image", "scheme", "cbr", "snr_db", *metrics]
    if any("snr_error_db" in r for r in rows):  # a receiver estimated the SNR
        cols.append("snr_error_db")
    from .eval.text import aligned

    def cell(r: dict, c: str) -> str:
        return r["cbr_str"] if c == "cbr" else _fmt(c, r.get(c, "-"))

    return aligned([cols, *([cell(r, c) for c in cols] for r in rows)])


def _unique_stems(paths: Sequence[str | Path]) -> list[str]:
    """File stems, made unique (``a``, ``a_2``, ...) so outputs never overwrite each other."""
    out: list[str] = []
    taken: set[str] = set()
    for p in paths:
        stem = Path(p).stem or "image"
        name, k = stem, 1
        while name in taken:  # also past a later file's own name, e.g. a, a, a_2
            k += 1
            name = f"{stem}_{k}"
        taken.add(name)
        out.append(name)
    return out


# -------------------------------------------------------------------- transmit
def _check_out_folder(out: Path) -> None:
    """``--out`` of transmit / demo: a folder for the images (refused when it is a file)."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} is a file: give a folder for the images")


def _transmit_images(
    images: list[tuple[str, torch.Tensor]],
    args: argparse.Namespace,
    out: Path,
    snrs: list[float],
    tile_width: int = 256,
) -> tuple[list[dict], list[Path]]:
    """Send each image through every scheme; write PNGs and one grid per image."""
    from tqdm.auto import tqdm

    from .data import save_image
    from .eval.grid import Tile, make_grid
    from .eval.sweep import image_seed, note_pilots, safe_metrics

    device = parse_device(args.device)
    _check_out_folder(out)
    channel = _channel(args)
    schemes = _build_schemes(args, device)
    if not args.force:  # a re-run replaces its own images, never a file it did not write
        planned = [
            out / _image_name(stem, key.label, snr)
            for stem, _ in images
            for key, _ in schemes
            for snr in snrs
        ]
        planned += [out / f"{stem}_grid.png" for stem, _ in images]
        _refuse_foreign(planned, _is_ours_png, "an image semcom wrote")
    try:  # created once the options are known to be good
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"--out {str(out)!r}: cannot create it: {e.strerror}") from e
    rows, grids = [], []
    noted: set[str] = set()
    info = _png_info()
    snr_t = torch.tensor(snrs, dtype=torch.float64, device=device)
    bar = tqdm(
        total=len(images) * len(schemes),
        desc="transmit",
        unit="img",
        file=sys.stderr,
        disable=None if getattr(args, "progress", True) else True,
    )
    for idx, (stem, img) in enumerate(images):
        x = img.to(device).unsqueeze(0).expand(len(snrs), -1, -1, -1)
        grid_rows = []
        for key, scheme in schemes:
            g = torch.Generator(device=device).manual_seed(image_seed(args.seed, idx))
            tx = scheme.transmit(x, channel, snr_t, g)
            note_pilots(key.label, tx.cbr, noted)
            vals = safe_metrics(x.float(), tx.images.float(), args.metrics)
            tiles = []
            for j, snr in enumerate(snrs):
                save_image(tx.images[j], out / _image_name(stem, key.label, snr), pnginfo=info)
                row = {
                    "image": stem,
                    "scheme": key.scheme,
                    "cbr": float(tx.cbr.cbr),  # a number, as in eval's results files
                    "cbr_str": format_cbr(tx.cbr.cbr),
                    "snr_db": snr,
                }
                row.update({m: float(vals[m][j]) for m in args.metrics})
                if tx.snr_error_db is not None:  # estimate - true equivalent SNR (dB)
                    row["snr_error_db"] = float(tx.snr_error_db[j])
                counts = {k: int(v[j]) for k, v in tx.counts.items() if int(v[j])}
                if counts:  # what the receiver clamped
                    row["counts"] = counts
                rows.append(row)
                cap = [f"PSNR {row['psnr']:.2f} dB"] if "psnr" in row else []
                cap = [c for c in cap if "nan" not in c]
                if "lpips" in row and math.isfinite(row["lpips"]):
                    cap.append(f"LPIPS {row['lpips']:.3f}")
                tiles.append(Tile(tx.images[j].cpu(), cap))
            grid_rows.append((f"{key.label}\nCBR {format_cbr(tx.cbr.cbr)}", [None, *tiles]))
            bar.update(1)
        h, w = img.shape[-2:]
        grid_rows[0][1][0] = Tile(img, [f"original {w}x{h}"])
        title = f"{stem}: {channel.name}, CSI {channel.csi}, seed {args.seed}"
        grid = make_grid(
            grid_rows,
            ["original"] + [f"SNR {s:g} dB" for s in snrs],
            tile_width=tile_width,
            title=title,
        )
        path = out / f"{stem}_grid.png"
        with atomic_path(path) as tmp:  # never a half-written grid
            grid.save(tmp, format="PNG", pnginfo=info)
        grids.append(path)
    bar.close()
    return rows, grids


def _image_name(stem: str, label: str, snr: float) -> str:
    """File name of ``transmit``'s reconstruction of image ``stem`` by scheme ``label``."""
    tag = re.sub(r"[^A-Za-z0-9+.-]+", "_", label.replace("/", "-")).strip("_")
    return f"{stem}_{tag}_snr{snr:g}dB.png"


def _centre_crop(args: argparse.Namespace) -> dict:
    """``get_dataset`` keywords of ``--crop N``: centre N x N crops ({} without it), refused
    before any work when a metric of ``--metrics`` cannot be computed on N x N images (it
    would be NaN in every row: LPIPS needs 31 px, SSIM 11, ...)."""
    if not args.crop:
        return {}
    from .metrics import compute_metrics

    probe = torch.rand(1, 3, args.crop, args.crop, generator=torch.Generator().manual_seed(0))
    for name in getattr(args, "metrics", None) or ():
        try:
            compute_metrics(probe, probe, [name])
        except (RuntimeError, ValueError) as e:
            raise CLIError(
                f"--crop {args.crop}: {name} cannot be computed on {args.crop}x{args.crop} "
                f"images ({' '.join(str(e).split())}): crop larger or leave {name} out of "
                "--metrics"
            ) from None
    return {"crop": args.crop, "random_crop": False}


def _is_gray(x: torch.Tensor) -> bool:
    """A ``[3, H, W]`` image whose three channels are equal."""
    return bool(torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]))


def cmd_transmit(args: argparse.Namespace) -> int:
    from .data.io import is_transparent, load_image

    snrs = _snr_list(args)
    # read every input first: a bad file fails before any work
    images = [
        (stem, load_image(p))
        for stem, p in zip(_unique_stems(args.images), args.images, strict=True)
    ]
    out = Path(args.out)
    start = time.time()
    rows, grids = _transmit_images(images, args, out, snrs)
    gray = [p for p, (_, x) in zip(args.images, images, strict=True) if _is_gray(x)]
    if gray:  # the schemes code colour: a gray image may come back tinted
        print(
            f"semcom: note: {', '.join(gray)}: gray, sent as RGB (three equal channels); the "
            "reconstructions are colour images",
            file=sys.stderr,
        )
    clear = [p for p in args.images if is_transparent(p)]
    if clear:
        print(
            f"semcom: note: {', '.join(clear)}: transparent pixels, sent composited over white",
            file=sys.stderr,
        )
    older = [f for f in out.iterdir() if f.is_file() and f.stat().st_mtime < start - 1]
    if older:  # an earlier run's outputs (other schemes or SNRs) beside this one's
        print(
            f"semcom: note: {out}/ also holds {len(older)} files of an earlier run (kept)",
            file=sys.stderr,
        )
    if args.json:
        doc = {"results": rows, "grids": [str(g) for g in grids], "out": str(out)}
        print(json_text(doc, indent=1))
    else:
        print(_table(rows, args.metrics))
        clamped = [r for r in rows if r.get("counts")]
        if clamped and args.verbose:
            for r in clamped:
                said = describe_counts(r["counts"])
                print(f"{r['image']} {r['scheme']} SNR {r['snr_db']:g} dB: clamped: {said}")
        elif clamped:
            print(f"(the receiver clamped some inputs in {len(clamped)} rows: -v says where)")
        for g in grids:
            print(f"grid: {g}")
        print(f"reconstructions in {out}/")
    return 0


# ------------------------------------------------------------------------ eval
def _eval_ranks(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, device): under ``torchrun`` (``WORLD_SIZE`` > 1) join the process
    group (gloo on CPU, nccl on CUDA, each rank on its own GPU, made current before NCCL starts:
    its collectives use the current one) so images can be sharded; otherwise (0, 1, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device


def _partial_file(out: Path, rank: int, world: int) -> Path:
    """The partial results of one process of a sweep writing ``out`` (one per torchrun rank)."""
    return out.with_name(f"{out.name}.partial" + (f".rank{rank}" if world > 1 else "") + ".jsonl")


def cmd_eval(args: argparse.Namespace) -> int:
    from .data import get_dataset
    from .eval.sweep import (
        evaluate,
        results_document,
        scheme_weights,
        summarize,
    )
    from .separation.common import dataset_fallback

    if args.spread and args.limit is None:
        raise CLIError("--spread spreads --limit N images over the data set: give --limit")
    rank, world, device = _eval_ranks(parse_device(args.device))
    _results_file(args)
    channel = _channel(args)
    snrs = _snr_list(args)
    crop = _centre_crop(args)
    ds = get_dataset(args.dataset, **crop)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    if args.spread:  # n images evenly spaced over the set (class-sorted sets: all classes)
        indices = sorted({round(k * len(ds) / n) for k in range(n)})
    else:
        indices = list(range(n))
    schemes = _build_schemes(args, device)
    fallback = any(hasattr(sch, "fallback_image") for _, sch in schemes)
    fallback_kind = None
    if fallback:
        # separation baselines show the data set's mean image when decoding fails (as peers):
        # over the whole data set (as cropped), so --limit / --spread do not change it
        mean, fallback_kind = dataset_fallback(args.dataset, ds, args.crop)
        for _, sch in schemes:
            if hasattr(sch, "fallback_image"):
                sch.fallback_image = mean.to(device)
    out = Path(args.out)
    # the weights each curve runs: a partial file of other weights is never resumed
    weights = scheme_weights(schemes)
    header = {
        "dataset": args.dataset,
        "crop": args.crop,
        "spread": bool(args.spread),
        "channel": repr(channel),
        "snr_db": snrs,
        "seed": args.seed,
        "batch_size": args.batch_size,
        # the noise is drawn by a generator on the device: CPU and CUDA draw differently
        "device": device.type,
        "metrics": list(args.metrics),
        "receiver": {k: getattr(args, k, None) for k in RECEIVER_OPTIONS},
        "weights": weights,
        **({"fallback_mean_images": len(ds), "fallback": fallback_kind} if fallback else {}),
    }
    if world > 1:  # under torchrun: shard images over ranks, one partial file per rank
        header["world_size"] = world
    partial = _partial_file(out, rank, world)
    names = list(getattr(ds, "names", None) or [str(i) for i in range(len(ds))])
    t0 = time.perf_counter()
    rows = evaluate(
        schemes,
        [(i, names[i], None) for i in indices[rank::world]],
        channel,
        snrs,
        load=lambda i: ds[i],
        seed=args.seed,
        metrics=args.metrics,
        device=device,
        batch_size=args.batch_size,
        partial=partial,
        header=header,
        progress=not args.quiet and rank == 0,
        replace_partial=args.force,  # --force: another sweep's partial file goes too
    )
    if world > 1:
        import torch.distributed as dist

        gathered: list = [None] * world
        dist.all_gather_object(gathered, rows)
        rows = [r for part in gathered for r in part]
    try:
        if rank == 0:  # rank 0 writes the JSON, then removes the partial files (until then
            # they are every rank's finished work, should rank 0 fail)
            wanted = set(indices)
            rows = sorted((r for r in rows if r["image"] in wanted),
                          key=lambda r: (r["run"], r["image"]))  # fmt: skip
            runs = summarize(rows, [k for k, _ in schemes], snrs, args.metrics, weights)
            meta = {
                "command": launch_command(args.argv),
                "processes": world,
                "seed": args.seed,
                "crop": args.crop,
                "spread": bool(args.spread),
                "batch_size": args.batch_size,
                "device": str(device),
                "wall_seconds": round(time.perf_counter() - t0, 1),
            }
            doc = results_document(runs, args.dataset, n, channel, meta, crop=args.crop,
                                   spread=args.spread)  # fmt: skip
            atomic_write_json(out, doc, indent=1)
            for r in range(world):  # the shards' files too (on a shared file system)
                _partial_file(out, r, world).unlink(missing_ok=True)
    finally:
        if world > 1:
            # every rank stays until the results are written: gloo has aborted a finished rank
            # at its exit, after which torchrun stopped the others, rank 0 before it wrote
            dist.barrier()
            dist.destroy_process_group()
    if rank != 0:
        return 0
    if not args.quiet and getattr(args, "summary", True):  # reproduce prints its own
        clamped = False
        for run in runs:
            print(f"{run['scheme']} CBR {run['cbr_str']} ({run['n_images']} images)")
            for j, s in enumerate(snrs):
                vals = "  ".join(f"{m} {run[m][j]:.4f}" for m in args.metrics)
                if "snr_est_rmse_db" in run:  # the receiver estimated the SNR
                    vals += f"  SNR estimate RMSE {run['snr_est_rmse_db'][j]:.2f} dB"
                print(f"  SNR {s:6.1f} dB  {vals}  {run['seconds_per_image'][j]:.2f} s/img")
                said = describe_counts(
                    {k: v[j] for k, v in run.get("counts", {}).items()}, run["n_images"]
                )
                clamped = clamped or bool(said)
                if said and args.verbose:
                    print(f"    clamped: {said}")
        if clamped and not args.verbose:
            print("(the receiver clamped some inputs: -v says where; 'counts' in the file)")
        print(f"wrote {out}")
        if len(runs) > 1:  # the same images and channel draws: a paired comparison applies
            from shlex import quote

            from .eval.stats import run_label

            a, b = quote(run_label(runs[-1])), quote(run_label(runs[-2]))
            print(f"compare two runs: semcom compare {quote(str(out))} --scheme {a} --against {b}")
    return 0


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

    from .train.cli import parse_args

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
    from .eval.reproduce import format_checks

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

    from .eval.plot import load_results
    from .eval.reproduce import compare_results, recorded_eval_commands, weight_changes

    command = _recorded_command(Path(name))
    words = command_args(command) if command else None
    if words and words[0] == "experiment":
        return _reproduce_experiment(name, words, args)
    stored = load_results(name)
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


def _reproduce_experiment(name: str, recorded: list[str], args: argparse.Namespace) -> bool:
    """Re-run the ``semcom experiment`` results file ``name`` records (whole: its numbers are
    means over its images), compare every number and print; True when all are within the
    tolerances."""
    import tempfile

    from .eval.reproduce import compare_documents

    if args.limit is not None:
        raise CLIError(
            f"{name} holds an experiment's means over its images: reproduce it whole (no --limit)"
        )
    stored = json.loads(Path(name).read_text())
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


# ------------------------------------------------------------------------ demo
#: scheme options that change results (part of the resume header of 'semcom eval').
RECEIVER_OPTIONS = (
    "codec",
    "matching",
    "steps",
    "fading",
    "fading_grid",
    "fading_samples",
    "dm_stop",
    "dm_decoder",
    "denoiser",
    "snr_source",
    "snr_estimator",
)
#: schemes the demo shows, in order; those without shipped checkpoints are skipped (with a note).
DEMO_SCHEMES = ["vae", "vae+dm", "deepjscc", "deepjscc+dm", "adjscc", "adjscc+dm", "jpeg+capacity"]
#: CBR of the demo's schemes with variants (the full-size JSCC models; vae is fixed at 1/12).
DEMO_CBR = "1/16"


def cmd_demo(args: argparse.Namespace) -> int:
    from .data import get_dataset
    from .schemes import fixed_cbr, get_scheme

    t0 = time.perf_counter()  # the whole demo: loading the networks included
    out = Path(args.out)
    _check_out_folder(out)  # before the networks load (seconds)
    if not args.force:
        _refuse_foreign([out / "table.txt"], _is_table, "a table semcom demo wrote")
    ds = get_dataset("samples")
    n = min(args.limit, len(ds))
    images = [(ds.names[i], _fit(ds[i], args.size)) for i in range(n)]
    args.scheme = []
    for name in DEMO_SCHEMES:
        try:
            get_scheme(name, None if fixed_cbr(name) else parse_cbr(DEMO_CBR))
        except (ValueError, MissingResourceError) as e:
            print(f"semcom: note: skipping {name}: {' '.join(str(e).split())}", file=sys.stderr)
            continue
        args.scheme.append(name)
    if not args.scheme:
        raise CLIError("no scheme is available for the demo")
    args.cbr, args.cbr_given = [DEMO_CBR], False
    snrs = _snr_list(args)
    rows, grids = _transmit_images(images, args, out, snrs, tile_width=192)
    table = _table(rows, args.metrics)
    with atomic_path(out / "table.txt") as tmp:
        tmp.write_text(table + "\n")
    print(table)
    print(f"\ndemo took {time.perf_counter() - t0:.1f} s")
    print(f"grids: {', '.join(str(g) for g in grids)}")
    print(f"table: {out / 'table.txt'}; reconstructions in {out}/")
    return 0


def _fit(img: torch.Tensor, size: int) -> torch.Tensor:
    """Downscale [3, H, W] so the longer side is at most ``size`` (area interpolation)."""
    h, w = img.shape[-2:]
    s = size / max(h, w)
    if s >= 1:
        return img
    new = (max(1, round(h * s)), max(1, round(w * s)))
    return torch.nn.functional.interpolate(img[None], size=new, mode="area")[0]


# ---------------------------------------------------------------- list commands
def cmd_schemes(args: argparse.Namespace) -> int:
    from .eval.text import aligned
    from .schemes import list_schemes

    rows = []
    for spec in list_schemes():
        shown = spec.cbrs or spec.shown_cbrs
        cbrs = ", ".join(format_cbr(c) for c in shown) if shown else "any"
        rows.append([spec.name, cbrs, spec.description])
    print(aligned([["scheme", "CBR", "what"], *rows]))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import list_datasets

    for name, desc in list_datasets().items():
        print(f"{name:16s} {desc}")
    return 0


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from .eval.plot import METRIC_LABELS
    from .eval.reproduce import TOLERANCE, TOLERANCE_DB
    from .metrics import HIGHER_IS_BETTER

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

    pl = sub.add_parser("plot", help="draw results JSON files against SNR -> PNG")
    pl.add_argument("results", nargs="+", help="results JSON files from 'semcom eval'")
    pl.add_argument("--metric", default="psnr", choices=list(METRIC_LABELS))
    pl.add_argument(
        "--anchors", nargs="*", default=[], action=_Once, help="published curves (results/anchors)"
    )
    pl.add_argument("--title", default=None)
    _add_ci_arg(pl, "error bars: the t-interval of each mean over the images")
    pl.add_argument("--out", default="fig.png", help="output PNG (default ./fig.png)")
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

    tb = sub.add_parser("table", help="print results JSON files as a Markdown table")
    tb.add_argument("results", nargs="+", help="results JSON files from 'semcom eval'")
    tb.add_argument(
        "--metrics", nargs="+", default=["psnr"], choices=list(METRIC_LABELS), metavar="M",
        action=_Once,
        help=f"a row per run and metric, from {' '.join(METRIC_LABELS)}",
    )  # fmt: skip
    _add_ci_arg(tb, "add ± the half-width of the t-interval of each mean over the images")
    tb.set_defaults(func=cmd_table)

    cp = sub.add_parser(
        "compare",
        help="paired comparison of two runs (same images and channel draws) with confidence "
        "intervals",
        description="Compare run A with run B of results files per SNR: both means, their "
        "difference over the same images (a paired t-interval: the runs of one sweep saw the "
        "same channel draws) and whether it excludes 0. Runs are named scheme or scheme@CBR "
        "(e.g. adjscc+dm@1/16), as 'semcom table' lists them.",
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
    cp.set_defaults(func=cmd_compare)

    from .train.cli import add_train_parser
    from .zoo import add_zoo_parser

    add_train_parser(sub)
    add_zoo_parser(sub)
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    from .data import get_dataset
    from .eval.bench import add_ratios, bench_schemes, format_bench

    device = parse_device(args.device)
    to_stdout = args.json == "-"  # --json alone: JSON instead of the table, as transmit's
    if args.json and not to_stdout:
        _replaceable(args.json, "--json", args.force, _is_bench, "a 'semcom bench' JSON")
    crop = _centre_crop(args)
    ds = get_dataset(args.dataset, **crop)
    images = [ds[i].to(device) for i in range(min(args.limit, len(ds)))]
    schemes = [(key.label, sch) for key, sch in _build_schemes(args, device)]
    snrs = _snr_list(args)
    channel = _channel(args)
    rows = bench_schemes(schemes, images, channel, snrs, repeats=args.repeats, seed=args.seed)
    add_ratios(rows, schemes[0][0])
    settings = {
        "images": len(images),
        "dataset": args.dataset,
        "crop": args.crop,
        "channel": args.channel,
        "csi": args.csi,
        **({"pilots": channel.pilots} if args.csi == "estimated" else {}),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "seconds": "per image",
        "command": launch_command(args.argv),
    }
    doc = {"settings": settings, "rows": rows}
    if to_stdout:
        print(json_text(doc, indent=1))
        return 0
    size = f" (centre {args.crop}x{args.crop})" if args.crop else ""
    print(
        f"{len(images)} {args.dataset} images{size}, {args.channel}, device {device}, "
        f"{torch.get_num_threads()} threads; seconds per image"
    )
    print(format_bench(rows))
    if args.json:
        atomic_write_json(args.json, doc, indent=1)
    return 0


def cmd_experiment_perturb(args: argparse.Namespace) -> int:
    from .data import get_dataset
    from .eval.experiments import (
        DEFAULT_DELTAS,
        better_than_matched,
        perturb_experiment,
        plot_perturb,
    )

    device = parse_device(args.device)
    figure = _experiment_files(args)
    if args.scheme and len(args.scheme) > 1:
        raise CLIError("experiment perturb takes one --scheme")
    args.scheme = args.scheme or ["vae+dm"]
    if not args.scheme[0].endswith("+dm"):
        raise CLIError(
            f"experiment perturb studies a diffusion receiver's matched step and scaling: give "
            f"a '+dm' scheme (vae+dm, deepjscc+dm, adjscc+dm), not {args.scheme[0]!r}"
        )
    # t* and alpha are studied on the whole reverse process, decoded by the codec's own decoder
    args.dm_stop = args.dm_stop or "clean"
    args.dm_decoder = args.dm_decoder or "base"
    deltas = tuple(args.deltas) if args.deltas else DEFAULT_DELTAS
    if 0.0 not in deltas:
        deltas = tuple(sorted((*deltas, 0.0)))
    crop = _centre_crop(args)
    ds = get_dataset(args.dataset, **crop)
    images = [ds[i][None].to(device) for i in range(min(args.limit, len(ds)))]
    (_, link), *_ = _build_schemes(args, device)
    doc = perturb_experiment(link, images, args.snr, deltas, args.seed, progress=not args.quiet)
    doc.update(dataset=args.dataset, crop=args.crop, command=launch_command(args.argv))
    out = Path(args.out)
    atomic_write_json(out, doc, indent=1)
    fig = plot_perturb(doc, figure)
    for param in ("t", "alpha"):
        for metric in ("latent_mse", "psnr"):
            beaten = better_than_matched(doc, param, metric)
            verdict = ", ".join(
                f"{s:g} dB: " + ("yes" if not b else "NO, " + "/".join(f"{d:+g}" for d in b))
                for s, b in zip(args.snr, beaten, strict=True)
            )
            print(f"{param}: matched value best or within noise ({metric}) at {verdict}")
    if len(images) >= 2:
        print(
            f"(within noise: no perturbation better by the paired 95 % t-interval over the "
            f"{len(images)} images)"
        )
    else:  # no interval over one image: better_than_matched's margins on the values
        print(
            "(one image, no interval: 'better' is by more than 1 % latent MSE or 0.05 dB PSNR; "
            "give --limit 2 or more for a test over images)"
        )
    print(f"wrote {out} and {fig}")
    return 0


def cmd_experiment_ood(args: argparse.Namespace) -> int:
    from statistics import fmean

    from .data import get_dataset
    from .eval.experiments import ood_experiment, plot_ood

    device = parse_device(args.device)
    figure = _experiment_files(args)
    if args.in_data == args.out_data:
        raise CLIError("--in-data and --out-data must differ")
    args.scheme = args.scheme or ["vae", "vae+dm"]
    crop = _centre_crop(args)
    sets = {}
    for name in (args.in_data, args.out_data):
        ds = get_dataset(name, **crop)
        sets[name] = [ds[i] for i in range(min(args.limit, len(ds)))]
    doc = ood_experiment(
        _build_schemes(args, device),
        sets,
        _channel(args),
        _snr_list(args),
        seed=args.seed,
        metrics=args.metrics if "psnr" in args.metrics else ["psnr", *args.metrics],
        device=device,
        progress=not args.quiet,
        denoiser_ref=args.denoiser,
    )
    doc.update(crop=args.crop, command=launch_command(args.argv))
    out = Path(args.out)
    atomic_write_json(out, doc, indent=1)
    fig = plot_ood(doc, figure)
    for run_in, run_out in zip(doc["sets"][args.in_data], doc["sets"][args.out_data], strict=True):
        print(
            f"{run_in['label']:32s} PSNR {fmean(run_in['psnr']):6.2f} dB on {args.in_data}, "
            f"{fmean(run_out['psnr']):6.2f} dB on {args.out_data} (mean over SNRs)"
        )
    for label, gains in doc["dm_gain"].items():
        txt = ", ".join(f"{n} {fmean(g['psnr']):+.2f} dB" for n, g in gains.items())
        print(f"{label}: mean PSNR gain over its codec: {txt}")
    print(f"wrote {out} and {fig}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from .eval.plot import load_results
    from .eval.sweep import merge_results

    out = _replaceable(args.out, "--out", args.force, _is_results, "a results JSON")
    doc = merge_results([load_results(f) for f in args.results], args.results)
    atomic_write_json(out, doc, indent=1)
    print(f"wrote {args.out} ({len(doc['runs'])} runs)")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from .eval.plot import results_table

    print(results_table(args.results, args.metrics, ci=args.ci))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .eval.plot import load_results
    from .eval.stats import compare_runs, comparison_table, find_runs, run_label
    from .eval.sweep import check_mergeable

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
    print(comparison_table(rows, named, args.level))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .eval.plot import plot_results

    if Path(args.out).suffix.lower() != ".png":
        raise CLIError(f"--out {args.out!r}: plot writes a PNG; give a name ending in .png")
    _replaceable(args.out, "--out", args.force, _is_figure, "a figure")
    out = plot_results(args.results, args.metric, args.out, args.anchors, args.title, args.ci)
    print(f"wrote {out}")
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"semcom: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``semcom`` command with ``argv`` (default ``sys.argv[1:]``); return the exit
    code (0 ok, 2 user error with a one-line message on stderr, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    from .data import ImageReadError
    from .train.cli import parse_args

    args = None
    try:
        args = parse_args(parser, argv)
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except (CLIError, ImageReadError, MissingResourceError, ValueError, OSError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"semcom: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except FloatingPointError as e:  # a training run that diverged: not a usage error
        print(f"semcom: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("RANK", "0") != "0":
            return 130  # every process of a torchrun gets the Ctrl-C: rank 0 says it once
        print(f"semcom: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130


def _resume_hint(args: argparse.Namespace | None) -> str:
    """What an interrupted ``semcom train`` continues with: the command resuming the folder
    that holds its last checkpoint (with the ``torchrun`` launcher and process count it ran
    with), or that there is none; empty for other commands."""
    if getattr(args, "command", None) != "train":
        return ""
    out, resume = getattr(args, "out", None), getattr(args, "resume", None)
    for run, more in ((out, []), (resume, ["--out", out] if out and out != resume else [])):
        if run and (Path(run) / "card.json").is_file():
            cmd = launch_command(["train", args.train_command, "--resume", run, *more])
            return f"; continue from the last checkpoint with {cmd!r} (later steps are redone)"
    return " before the first checkpoint: nothing to resume, start the run again"


if __name__ == "__main__":
    sys.exit(main())
