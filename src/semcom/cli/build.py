"""What a command asks for, built from its options: the channel, the (run, scheme) pairs of
every scheme x CBR, the SNR grid (dB) and the crop of its data set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..channels import format_cbr, parse_cbr
from .args import CLIError

if TYPE_CHECKING:
    import torch

    from ..channels import Channel
    from ..eval.sweep import RunKey
    from ..link import Scheme


def _channel(args: argparse.Namespace) -> Channel:
    from ..channels import Channel

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


def _build_schemes(args: argparse.Namespace, device: torch.device) -> list[tuple[RunKey, Scheme]]:
    """(RunKey, scheme) pairs for every requested scheme x CBR."""
    from ..eval.sweep import RunKey
    from ..schemes import OPTION_FLAGS, fixed_cbr, get_scheme, list_schemes, run_name

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
    out: list[tuple[RunKey, Scheme]] = []
    for name in names:
        # each scheme gets the options it takes (get_scheme refuses the others)
        mine = {k: v for k, v in options.items() if k in takes.get(name, ())}
        fixed = fixed_cbr(name)
        name_cbrs = cbrs
        if fixed is not None and cbrs != [None]:
            # --cbr picks variants of the other schemes; a fixed-CBR scheme runs once at its own
            # CBR (asked alone at another CBR, the scheme's error says so)
            asked = any(c is not None and abs(c - fixed) <= 1e-3 * fixed for c in cbrs)
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
            run_key = RunKey(run_name(name, **mine), None if fixed else cbr)
            if run_key not in [k for k, _ in out]:
                out.append((run_key, scheme))
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
    from ..zoo import unfinished

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


def _centre_crop(args: argparse.Namespace) -> dict:
    """``get_dataset`` keywords of ``--crop N``: centre N x N crops ({} without it), refused
    before any work when a metric of ``--metrics`` cannot be computed on N x N images (it
    would be NaN in every row: LPIPS needs 31 px, SSIM 11, ...)."""
    if not args.crop:
        return {}
    import torch

    from ..metrics import compute_metrics

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
