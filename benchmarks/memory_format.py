"""A codec's encode/decode time, contiguous vs channels-last, in one run (on demand, not a test).

    python benchmarks/memory_format.py [--codec vae|deepjscc|adjscc] [--cbr 1/16]
        [--size 512x768] [--repeats 3] [--threads 1]

Prints seconds per image (best of ``--repeats``) for each memory format and the ratio, and
the largest output difference between the two (float rounding only). The codecs run
channels-last since this was measured (docs/results.md, Speed): TAEF2 (``vae``) since
2026-11-28, DeepJSCC / ADJSCC as loaded (:func:`semcom.codecs.jscc.load_jscc`) since 2026-11-30.
"""

from __future__ import annotations

import argparse
import time

import torch


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def set_layout(codec, fmt: torch.memory_format) -> None:
    """A codec's weights and the inputs it converts (``Codec.layout``) in ``fmt``."""
    codec.to(memory_format=fmt)
    codec.layout = fmt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--codec", default="vae", choices=("vae", "deepjscc", "adjscc"))
    p.add_argument("--cbr", default="1/16", help="CBR of the JSCC codec (shipped checkpoint)")
    p.add_argument("--size", default="512x768", help="HxW of the test image")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    if args.codec == "vae":
        from semcom.codecs.taef2 import load_taef2

        codec = load_taef2("cpu")
    else:
        from semcom.zoo import load_codec

        codec = load_codec(args.codec, args.cbr)
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    snr = torch.tensor([0.0])
    rows, outs = {}, {}
    with torch.inference_mode():
        for fmt in (torch.contiguous_format, torch.channels_last):
            set_layout(codec, fmt)
            z = codec.encode(x, snr)
            enc = best_time(lambda: codec.encode(x, snr), args.repeats)
            dec = best_time(lambda z=z: codec.decode(z, (h, w), snr), args.repeats)
            rows[str(fmt)] = (enc, dec)
            outs[str(fmt)] = codec.decode(z, (h, w), snr)
    (e0, d0), (e1, d1) = rows.values()
    print(f"{args.codec}, {h}x{w}, {args.threads} thread(s), best of {args.repeats}; s per image")
    for name, (e, d) in rows.items():
        print(f"  {name:24s} encode {e:6.3f}  decode {d:6.3f}")
    print(f"  channels-last speed-up: encode {e0 / e1:.2f}x, decode {d0 / d1:.2f}x")
    a, b = outs.values()
    print(f"  max |difference| of decoded images: {(a - b).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
