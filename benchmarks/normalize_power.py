"""``normalize_power``'s time, the library's against its previous version, in one run (on
demand, not a test).

    python benchmarks/normalize_power.py [--shapes 128x3072 8x49152] [--dtype float32]
        [--repeats 200] [--threads 1]

For each ``BxL`` shape (a batch of latents flattened per image, as :func:`semcom.channels.pack`
passes them) prints CPU milliseconds per call (``time.process_time``: steadier than wall time
on a shared machine, and it counts the kernel's page faults of fresh allocations), the median
of ``--repeats`` calls taken in turn (previous, library, plain, previous, ...), of the forward
pass without autograd (evaluation), with autograd recording (training) and forward+backward,
for:

* ``plain``: ``v / sqrt(mean(v^2))`` (before the exact power-of-two prescale; wrong at extreme
  scales: float32 ``v^2`` overflows above ~1e19), for the cost of the formula itself;
* ``previous``: the prescale as first written (``abs``/``amax``, two ``pow`` for the factors, two
  products; kept here as the reference);
* ``library``: :func:`semcom.channels.normalize_power`;

then the ratio previous / library (and that of the wall-time medians), and checks that ``f``,
``rms`` and the gradient of the two are the same bits.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from semcom.channels import normalize_power


def previous(v: Tensor) -> tuple[Tensor, Tensor]:
    """``normalize_power`` as of commit c3a5128 (the reference the library must equal)."""
    _, e = torch.frexp(v.detach().abs().amax(dim=-1, keepdim=True))
    half = -(e // 2)
    s1 = torch.pow(2.0, half.to(v.dtype))
    s2 = torch.pow(2.0, (-e - half).to(v.dtype))
    u = v * s1 * s2
    ms = u.pow(2).mean(dim=-1)
    f = u / torch.where(ms > 0, ms, 1.0).sqrt().unsqueeze(-1)
    rms = ms.sqrt() / s1.squeeze(-1) / s2.squeeze(-1)
    return f, rms


def plain(v: Tensor) -> tuple[Tensor, Tensor]:
    """The formula without the prescale (before commit c3a5128)."""
    rms = v.pow(2).mean(dim=-1).sqrt()
    return v / rms.clamp_min(1e-12).unsqueeze(-1), rms


IMPLS = {"previous": previous, "library": normalize_power, "plain": plain}


def forward_backward(fn: Callable, v: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``fn``'s ``(f, rms)`` and the gradient of ``sum(w * f) + sum(rms)`` wrt ``v``."""
    x = v.detach().requires_grad_()
    f, rms = fn(x)
    ((f * w).sum() + rms.sum()).backward()
    return f.detach(), rms.detach(), x.grad


def timings(v: Tensor, w: Tensor, repeats: int) -> dict[str, dict[str, tuple[float, float]]]:
    """Median (CPU, wall) seconds per call of each implementation in each mode, calls
    alternated."""
    x = v.detach().requires_grad_()

    def no_grad(fn):
        with torch.no_grad():
            fn(v)

    def graph(fn):
        fn(x)

    modes = {
        "forward, no grad": no_grad,
        "forward, graph": graph,
        "forward+backward": lambda fn: forward_backward(fn, v, w),
    }
    out = {}
    for mode, call in modes.items():
        cpu: dict[str, list[float]] = {name: [] for name in IMPLS}
        wall: dict[str, list[float]] = {name: [] for name in IMPLS}
        for fn in IMPLS.values():  # warm-up
            call(fn)
        for _ in range(repeats):
            for name, fn in IMPLS.items():
                c0, t0 = time.process_time(), time.perf_counter()
                call(fn)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        out[mode] = {n: (statistics.median(cpu[n]), statistics.median(wall[n])) for n in IMPLS}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=["128x3072", "8x49152"], help="BxL")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"{args.dtype}, {args.threads} thread(s), median of {args.repeats}; CPU ms per call")
    for shape in args.shapes:
        b, n = (int(s) for s in shape.split("x"))
        g = torch.Generator().manual_seed(0)
        v = torch.randn(b, n, generator=g, dtype=dtype)
        w = torch.randn(b, n, generator=g, dtype=dtype)
        print(f"{b}x{n}:")
        for mode, t in timings(v, w, args.repeats).items():
            cols = "  ".join(f"{name} {1e3 * cpu:7.3f}" for name, (cpu, _) in t.items())
            ratio = t["previous"][0] / t["library"][0]
            wall = t["previous"][1] / t["library"][1]
            print(f"  {mode:16s}  {cols}  previous/library {ratio:.2f}x (wall {wall:.2f}x)")
        a = forward_backward(previous, v, w)
        b_ = forward_backward(normalize_power, v, w)
        with torch.no_grad():
            c = normalize_power(v)
        same = all(torch.equal(x, y) for x, y in zip(a, b_, strict=True))
        same = same and torch.equal(c[0], a[0]) and torch.equal(c[1], a[1])
        print(f"  f, rms and gradient the same as previous's: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
