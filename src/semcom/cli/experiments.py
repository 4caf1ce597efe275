"""``semcom experiment``: paper A's perturbation of t* and alpha (``perturb``) and in- vs
out-of-distribution test sets (``ood``); each writes a results JSON and a figure."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..devices import launch_command, parse_device
from ..paths import atomic_write_json
from .args import CLIError
from .build import _build_schemes, _centre_crop, _channel, _snr_list
from .outputs import _experiment_files, _output_lock

if TYPE_CHECKING:
    from torch import Tensor


def cmd_experiment_perturb(args: argparse.Namespace) -> int:
    """``semcom experiment perturb``: the t*/alpha mismatch study (paper A §V-D) -> ``--out``
    JSON + figure; returns the exit status."""
    with _output_lock(args.out):  # one semcom process at a time writes --out
        return _perturb(args)


def _perturb(args: argparse.Namespace) -> int:
    """``semcom experiment perturb`` once the lock of ``--out`` is held."""
    from ..data import get_dataset
    from ..eval.experiments import (
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
    """``semcom experiment ood``: the schemes on an in- and an out-of-distribution set
    (paper A §V-C) -> ``--out`` JSON + figure; returns the exit status."""
    with _output_lock(args.out):  # one semcom process at a time writes --out
        return _ood(args)


def _ood(args: argparse.Namespace) -> int:
    """``semcom experiment ood`` once the lock of ``--out`` is held."""
    from statistics import fmean

    from ..data import get_dataset
    from ..eval.experiments import ood_experiment, plot_ood

    device = parse_device(args.device)
    figure = _experiment_files(args)
    if args.in_data == args.out_data:
        raise CLIError("--in-data and --out-data must differ")
    args.scheme = args.scheme or ["vae", "vae+dm"]
    crop = _centre_crop(args)
    sets: dict[str, Sequence[Tensor]] = {}
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
