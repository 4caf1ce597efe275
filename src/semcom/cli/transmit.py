"""``semcom transmit`` (images over a channel -> reconstructions, a grid per image, a table) and
``semcom demo`` (the same on the embedded sample photos)."""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..channels import format_cbr, parse_cbr
from ..devices import parse_device
from ..paths import MissingResourceError, atomic_path, json_text
from .args import CLIError
from .build import _build_schemes, _channel, _snr_list
from .outputs import _check_out_folder, _is_ours_png, _is_table, _png_info, _refuse_foreign

if TYPE_CHECKING:
    import torch


def _fmt(col: str, v: object) -> str:
    if col == "snr_db" and isinstance(v, float):
        return f"{v:g}"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _table(rows: list[dict], metrics: Sequence[str]) -> str:
    cols = ["image", "scheme", "cbr", "snr_db", *metrics]
    if any("snr_error_db" in r for r in rows):  # a receiver estimated the SNR
        cols.append("snr_error_db")
    from ..eval.text import aligned

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


def _transmit_images(
    images: list[tuple[str, torch.Tensor]],
    args: argparse.Namespace,
    out: Path,
    snrs: list[float],
    tile_width: int = 256,
) -> tuple[list[dict], list[Path]]:
    """Send each image through every scheme; write PNGs and one grid per image."""
    import torch
    from tqdm.auto import tqdm

    from ..data import save_image
    from ..eval.grid import Tile, make_grid
    from ..eval.sweep import image_seed, note_pilots, safe_metrics

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
                row: dict[str, Any] = {
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


def _is_gray(x: torch.Tensor) -> bool:
    """A ``[3, H, W]`` image whose three channels are equal."""
    import torch

    return bool(torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]))


def cmd_transmit(args: argparse.Namespace) -> int:
    """``semcom transmit IMG...``: reconstructions, a grid and a metrics table in
    ``--out``; returns 0."""
    from ..data.io import is_transparent, load_image
    from ..link import describe_counts

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


#: schemes the demo shows, in order; those without shipped checkpoints are skipped (with a note).
DEMO_SCHEMES = ["vae", "vae+dm", "deepjscc", "deepjscc+dm", "adjscc", "adjscc+dm", "jpeg+capacity"]


#: CBR of the demo's schemes with variants (the full-size JSCC models; vae is fixed at 1/12).
DEMO_CBR = "1/16"


def cmd_demo(args: argparse.Namespace) -> int:
    """``semcom demo``: the sample photos through the best available schemes ->
    ``./semcom-demo/``; returns 0."""
    from ..data import get_dataset
    from ..schemes import fixed_cbr, get_scheme

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
    import torch

    h, w = img.shape[-2:]
    s = size / max(h, w)
    if s >= 1:
        return img
    new = (max(1, round(h * s)), max(1, round(w * s)))
    return torch.nn.functional.interpolate(img[None], size=new, mode="area")[0]
