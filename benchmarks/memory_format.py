"""TAEF2 encode/decode time, contiguous vs channels-last, in one run (on demand, not a test).

    python benchmarks/taef2_memory_format.py [--size 512x768] [--repeats 3] [--threads 1]

Prints seconds per image (best of ``--repeats``) for each memory format and the ratio, and
the largest output difference between the two (float rounding only). The codec uses
channels-last since this was measured (docs/results.md, Speed).
"""

from __future__ import annotations

import argparse
import time

import torch

from semcom.codecs.taef2 import load_taef2


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="512x768", help="HxW of the test image")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    codec = load_taef2("cpu")
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    rows, outs = {}, {}
    with torch.inference_mode():
        for fmt in (torch.contiguous_format, torch.channels_last):
            codec.to(memory_format=fmt)
            xi = x.contiguous(memory_format=fmt)
            z = codec.encoder(xi)
            zi = z.contiguous(memory_format=fmt)
            enc = best_time(lambda xi=xi: codec.encoder(xi), args.repeats)
            dec = best_time(lambda zi=zi: codec.decoder(zi), args.repeats)
            rows[str(fmt)] = (enc, dec)
            outs[str(fmt)] = codec.decoder(zi).contiguous()
    (e0, d0), (e1, d1) = rows.values()
    print(f"{h}x{w}, {args.threads} thread(s), best of {args.repeats}; seconds per image")
    for name, (e, d) in rows.items():
        print(f"  {name:24s} encode {e:6.3f}  decode {d:6.3f}")
    print(f"  channels-last speed-up: encode {e0 / e1:.2f}x, decode {d0 / d1:.2f}x")
    a, b = outs.values()
    print(f"  max |difference| of decoded images: {(a - b).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
