"""``semcom eval`` (an SNR sweep over a data set -> results JSON; resumable, shardable under
``torchrun``) and ``semcom bench`` (seconds per image of each stage)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..devices import launch_command, parse_device
from ..names import LABELLED_OPTIONS, OPTION_FLAGS
from ..paths import atomic_write_json, json_text
from .args import CLIError
from .build import _build_schemes, _centre_crop, _channel, _snr_list
from .outputs import _is_bench, _output_lock, _replaceable, _results_file

if TYPE_CHECKING:
    import torch

#: scheme options that change results (part of the resume header of 'semcom eval'): those run
#: labels name, as the CLI's argument names
RECEIVER_OPTIONS = tuple(OPTION_FLAGS.get(k, k) for k in LABELLED_OPTIONS)


def _eval_ranks(device: torch.device) -> tuple[int, int, torch.device]:
    """(rank, world size, device): under ``torchrun`` (``WORLD_SIZE`` > 1) join the process
    group (gloo on CPU, nccl on CUDA, each rank on its own GPU, made current before NCCL starts:
    its collectives use the current one) so images can be sharded; otherwise (0, 1, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch
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
    """``semcom eval``: the SNR sweep of each scheme on a data set -> ``--out`` results
    JSON (resumable, sharded under ``torchrun``); returns the exit status."""
    if args.spread and args.limit is None:
        raise CLIError("--spread spreads --limit N images over the data set: give --limit")
    rank, world, device = _eval_ranks(parse_device(args.device))
    # one semcom process (one torchrun) at a time writes --out and its partial files
    with _output_lock(args.out, rank=rank, world=world):
        return _eval(args, rank, world, device)


def _eval(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> int:
    """``semcom eval`` once :func:`cmd_eval` holds the lock of ``--out``."""
    import torch

    from ..data import get_dataset
    from ..eval.sweep import (
        evaluate,
        results_document,
        scheme_weights,
        summarize,
    )
    from ..link import describe_counts
    from ..separation.common import dataset_fallback

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
                # CPU convolutions round by the thread count (docs/results.md, reproducibility)
                "threads": torch.get_num_threads(),
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

            from ..eval.stats import run_label

            a, b = quote(run_label(runs[-1])), quote(run_label(runs[-2]))
            print(f"compare two runs: semcom compare {quote(str(out))} --scheme {a} --against {b}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``semcom bench``: seconds per image of each stage, as a table or ``--json``;
    returns the exit status."""
    device = parse_device(args.device)
    to_stdout = args.json == "-"  # --json alone: JSON instead of the table, as transmit's
    if args.json and not to_stdout:
        with _output_lock(args.json, "--json"):
            return _bench(args, device, to_stdout)
    return _bench(args, device, to_stdout)


def _bench(args: argparse.Namespace, device: torch.device, to_stdout: bool) -> int:
    """``semcom bench`` once :func:`cmd_bench` holds the lock of ``--json PATH``."""
    import torch

    from ..data import get_dataset
    from ..eval.bench import add_ratios, bench_schemes, format_bench

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
