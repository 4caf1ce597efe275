"""The ``semcom`` command line.

Subcommands: ``transmit``, ``eval``, ``demo``, ``schemes``, ``datasets``. Errors a user can
fix (a corrupt image, a missing data folder, a bad option) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from . import __version__
from .channels import CHANNELS, CSI_MODES, Channel, format_cbr, parse_cbr
from .paths import MissingResourceError

EXIT_USAGE = 2


class CLIError(Exception):
    """An error the user can fix; printed as one line, exit code 2."""


# --------------------------------------------------------------------- helpers
def _add_channel_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channel", default="awgn", choices=CHANNELS, help="channel model")
    p.add_argument("--csi", default="perfect", choices=CSI_MODES, help="receiver CSI")
    p.add_argument("--pilots", type=int, default=None, help="pilots per block (estimated CSI)")
    p.add_argument("--snr", type=float, nargs="+", default=None, help="SNR grid, dB (Es/N0)")
    p.add_argument("--seed", type=int, default=0, help="channel seed (same seed, same noise)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def _add_scheme_args(p: argparse.ArgumentParser, default: str | None = "vae") -> None:
    p.add_argument(
        "--scheme",
        action="append",
        default=None,
        help=f"scheme name, repeatable (default: {default}); see 'semcom schemes'",
    )
    p.add_argument(
        "--cbr", action="append", default=None, help="CBR (e.g. 1/16) for schemes with variants"
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        default=["psnr", "ssim", "ms_ssim", "lpips"],
        help="metrics to compute (psnr ssim ms_ssim lpips lpips_vgg dists)",
    )


def _channel(args: argparse.Namespace) -> Channel:
    return Channel(args.channel, csi=args.csi, pilots=args.pilots)


def _device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise CLIError(f"invalid --device {name!r}: {e}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda requested but no CUDA device is available")
    return dev


def _build_schemes(args: argparse.Namespace, device: torch.device):
    """(RunKey, scheme) pairs for every requested scheme x CBR."""
    from .eval.sweep import RunKey
    from .schemes import get_scheme

    names = args.scheme or ["vae"]
    cbrs = [parse_cbr(c) for c in args.cbr] if args.cbr else [None]
    out = []
    for name in names:
        for cbr in cbrs:
            scheme = get_scheme(name, cbr, device)
            fixed = getattr(scheme, "fixed_cbr", cbr is None)
            key = RunKey(name, None if fixed else cbr)
            if key not in [k for k, _ in out]:
                out.append((key, scheme))
    return out


def _snr_list(args: argparse.Namespace, default: Sequence[float]) -> list[float]:
    snrs = list(args.snr) if args.snr else list(default)
    if any(s != s for s in snrs):
        raise CLIError("--snr values must be numbers")
    return snrs


def _table(rows: list[dict], metrics: Sequence[str]) -> str:
    cols = ["image", "scheme", "cbr", "snr_db", *metrics]
    body = [[str(r[c]) if not isinstance(r[c], float) else f"{r[c]:.4f}" for c in cols]
            for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c)
              for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


# -------------------------------------------------------------------- transmit
def _transmit_images(
    images: list[tuple[str, torch.Tensor]],
    args: argparse.Namespace,
    out: Path,
    snrs: list[float],
    tile_width: int = 256,
) -> tuple[list[dict], list[Path]]:
    """Send each image through every scheme; write PNGs and one grid per image."""
    from .data import save_image
    from .eval.grid import Tile, make_grid
    from .eval.sweep import image_seed
    from .metrics import compute_metrics

    device = _device(args.device)
    channel = _channel(args)
    schemes = _build_schemes(args, device)
    out.mkdir(parents=True, exist_ok=True)
    rows, grids = [], []
    snr_t = torch.tensor(snrs, dtype=torch.float64, device=device)
    for idx, (stem, img) in enumerate(images):
        x = img.to(device).unsqueeze(0).expand(len(snrs), -1, -1, -1)
        grid_rows = []
        for key, scheme in schemes:
            g = torch.Generator(device=device).manual_seed(image_seed(args.seed, idx))
            tx = scheme.transmit(x, channel, snr_t, g)
            vals = compute_metrics(tx.images.float(), x.float(), args.metrics)
            tiles = []
            for j, snr in enumerate(snrs):
                tag = key.label.replace("/", "-").replace("@", "_")
                save_image(tx.images[j], out / f"{stem}_{tag}_snr{snr:g}dB.png")
                row = {"image": stem, "scheme": key.scheme, "cbr": format_cbr(tx.cbr.cbr),
                       "snr_db": snr}
                row.update({m: float(vals[m][j]) for m in args.metrics})
                rows.append(row)
                cap = [f"PSNR {row['psnr']:.2f} dB"] if "psnr" in row else []
                if "lpips" in row:
                    cap.append(f"LPIPS {row['lpips']:.3f}")
                tiles.append(Tile(tx.images[j].cpu(), cap))
            grid_rows.append((f"{key.label}\nCBR {format_cbr(tx.cbr.cbr)}", [None, *tiles]))
        grid_rows[0][1][0] = Tile(img, ["original"])
        title = f"{stem}: {channel!r}"
        grid = make_grid(grid_rows, ["original"] + [f"SNR {s:g} dB" for s in snrs],
                         tile_width=tile_width, title=title)
        path = out / f"{stem}_grid.png"
        grid.save(path)
        grids.append(path)
    return rows, grids


def cmd_transmit(args: argparse.Namespace) -> int:
    from .data import load_image

    images = []
    for p in args.images:  # read every input first: a bad file fails before any work
        images.append((Path(p).stem, load_image(p)))
    snrs = _snr_list(args, [0.0])
    rows, grids = _transmit_images(images, args, Path(args.out), snrs)
    if args.json:
        print(json.dumps({"results": rows, "grids": [str(g) for g in grids]}, indent=1))
    else:
        print(_table(rows, args.metrics))
        for g in grids:
            print(f"grid: {g}")
    return 0


# ------------------------------------------------------------------------ eval
def cmd_eval(args: argparse.Namespace) -> int:
    from .data import get_dataset
    from .eval.sweep import evaluate, results_document, summarize, write_json_atomic

    device = _device(args.device)
    channel = _channel(args)
    snrs = _snr_list(args, [-10, -5, 0, 5, 10, 15, 20])
    ds = get_dataset(args.dataset)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))
    schemes = _build_schemes(args, device)
    out = Path(args.out)
    header = {
        "dataset": args.dataset,
        "channel": repr(channel),
        "snr_db": snrs,
        "seed": args.seed,
        "metrics": list(args.metrics),
    }
    partial = out.with_name(out.name + ".partial.jsonl")
    names = [Path(str(p)).stem for p in getattr(ds, "paths", [])] or [str(i) for i in range(n)]
    t0 = time.perf_counter()
    rows = evaluate(
        schemes,
        [(i, names[i], None) for i in range(n)],
        channel,
        snrs,
        load=lambda i: ds[i],
        seed=args.seed,
        metrics=args.metrics,
        device=device,
        batch_size=args.batch_size,
        partial=partial,
        header=header,
        progress=not args.quiet,
    )
    rows = [r for r in rows if r["image"] < n]
    runs = summarize(rows, [k for k, _ in schemes], snrs, args.metrics)
    meta = {"command": "semcom " + " ".join(sys.argv[1:]), "seed": args.seed,
            "device": str(device), "wall_seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(results_document(runs, args.dataset, n, channel, meta), out)
    partial.unlink(missing_ok=True)
    if not args.quiet:
        for run in runs:
            print(f"{run['scheme']} CBR {run['cbr_str']} ({run['n_images']} images)")
            for j, s in enumerate(snrs):
                vals = "  ".join(f"{m} {run[m][j]:.4f}" for m in args.metrics)
                print(f"  SNR {s:6.1f} dB  {vals}  {run['seconds_per_image'][j]:.2f} s/img")
        print(f"wrote {out}")
    return 0


# ------------------------------------------------------------------------ demo
def cmd_demo(args: argparse.Namespace) -> int:
    from .data import get_dataset
    from .schemes import list_schemes

    ds = get_dataset("samples")
    images = [(Path(str(p)).stem, ds[i]) for i, p in enumerate(ds.paths)][: args.limit]
    if args.size:
        images = [(s, _fit(img, args.size)) for s, img in images]
    available = []
    for spec in list_schemes():
        if spec.name in DEMO_SCHEMES:
            available.append(spec.name)
    if not available:
        raise CLIError("no scheme is available for the demo (set SEMCOM_WEIGHTS)")
    args.scheme = [s for s in DEMO_SCHEMES if s in available]
    args.cbr = None
    snrs = _snr_list(args, [-5, 0, 5, 10])
    out = Path(args.out)
    t0 = time.perf_counter()
    rows, grids = _transmit_images(images, args, out, snrs, tile_width=192)
    table = _table(rows, args.metrics)
    (out / "table.txt").write_text(table + "\n")
    print(table)
    print(f"\ndemo took {time.perf_counter() - t0:.1f} s")
    print(f"grids: {', '.join(str(g) for g in grids)}")
    print(f"table: {out / 'table.txt'}; reconstructions in {out}/")
    return 0


#: Schemes shown by ``semcom demo`` when available, in order.
DEMO_SCHEMES = ["vae"]


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
    from .schemes import list_schemes

    for spec in list_schemes():
        cbrs = ", ".join(format_cbr(c) for c in spec.cbrs) if spec.cbrs else "-"
        print(f"{spec.name:16s} CBR {cbrs:16s} {spec.description}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import list_datasets

    for name, desc in list_datasets().items():
        print(f"{name:16s} {desc}")
    return 0


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semcom", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"semcom {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("transmit", help="send images over a channel, write PNGs + a grid")
    t.add_argument("images", nargs="+", help="image files (PNG/JPEG/BMP/TIFF)")
    _add_scheme_args(t)
    _add_channel_args(t)
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--json", action="store_true", help="print JSON instead of a table")
    t.set_defaults(func=cmd_transmit)

    e = sub.add_parser("eval", help="SNR sweep on a dataset -> results JSON")
    _add_scheme_args(e)
    _add_channel_args(e)
    e.add_argument("--dataset", default="kodak", help="named dataset (see 'semcom datasets')")
    e.add_argument("--out", required=True, help="results JSON path")
    e.add_argument("--limit", type=int, default=None, help="use the first N images")
    e.add_argument("--batch-size", type=int, default=8, help="SNRs per batch")
    e.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("demo", help="transmit the embedded sample photos (no arguments needed)")
    _add_channel_args(d)
    d.add_argument("--out", default="semcom-demo", help="output folder (default ./semcom-demo)")
    d.add_argument("--limit", type=int, default=4, help="number of sample photos")
    d.add_argument("--size", type=int, default=256, help="downscale photos to this size")
    d.add_argument("--metrics", nargs="+", default=["psnr", "ssim", "ms_ssim", "lpips"])
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("schemes", help="list available schemes")
    s.set_defaults(func=cmd_schemes)
    ds = sub.add_parser("datasets", help="list named datasets")
    ds.set_defaults(func=cmd_datasets)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .data import ImageReadError

    try:
        return args.func(args)
    except (CLIError, ImageReadError, MissingResourceError, ValueError) as e:
        print(f"semcom: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("semcom: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
