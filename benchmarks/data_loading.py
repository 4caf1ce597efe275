"""Training-data loading speed, files vs ``--cache-images``, in one run (on demand, not a test).

    SEMCOM_DATA=... python benchmarks/data_loading.py [--data bsds500-train] [--crop 256]
        [--batch-size 64] [--workers 0] [--batches 20] [--repeats 3]

Prints crops per second through a DataLoader (the training path: random crops + flips of
a ``--repeats`` epoch, collated into batches) reading the files each time and reading the
decoded images kept in memory, the time to fill that cache, and the ratio. A GPU run is
bound by this when the loader cannot keep up with the device (docs/training.md).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader

from semcom.data import RepeatedCrops, collate_images, get_dataset


def crops_per_second(ds, args) -> float:
    """Best of ``args.repeats`` timed passes of ``args.batches`` batches (crops per second)."""
    need = (args.batches + 1) * args.batch_size  # a --repeats epoch long enough
    loader = DataLoader(
        RepeatedCrops(ds, -(-need // len(ds))),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        collate_fn=collate_images,
        generator=torch.Generator().manual_seed(0),
    )
    best = 0.0
    for _ in range(args.repeats):
        it = iter(loader)
        next(it)  # worker start-up is not loading
        t0 = time.perf_counter()
        for _ in range(args.batches):
            next(it)
        best = max(best, args.batches * args.batch_size / (time.perf_counter() - t0))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="bsds500-train")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    files = get_dataset(args.data, crop=args.crop, flip=True, seed=0)
    cached = get_dataset(args.data, crop=args.crop, flip=True, seed=0)
    t0 = time.perf_counter()
    cached.cache()
    fill = time.perf_counter() - t0
    mb = sum(x.numel() * 4 for x in cached._cached.values()) / 2**20
    a = crops_per_second(files, args)
    b = crops_per_second(cached, args)
    print(f"{args.data}, {len(files)} images, crops of {args.crop}, batches of {args.batch_size}, "
          f"{args.workers} workers")  # fmt: skip
    print(f"files:  {a:8.0f} crops/s")
    print(f"cached: {b:8.0f} crops/s   (cache: {fill:.1f} s to fill, {mb:.0f} MiB)")
    print(f"ratio:  {b / a:.1f}x")


if __name__ == "__main__":
    main()
