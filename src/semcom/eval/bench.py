"""``semcom bench``: time per stage (encode, channel, denoise, decode) per image for each scheme.

Every scheme runs on the same images and SNRs in one process, after one warm-up call, so the
ratios between schemes (e.g. ``vae+dm`` receiver vs the plain ``vae`` decoder) are measured on the
same machine state. Times are wall-clock seconds per image (CUDA is synchronised per stage).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ..channels import Channel
from ..link import Scheme

STAGES = ("encode", "channel", "denoise", "decode")


def bench_schemes(
    schemes: Sequence[tuple[str, Scheme]],
    images: Sequence[torch.Tensor],
    channel: Channel,
    snrs: Sequence[float],
    repeats: int = 1,
    seed: int = 0,
) -> list[dict]:
    """Median-free simple timing: mean seconds per image and stage, per scheme and SNR.

    Args:
        schemes: ``(label, scheme)`` pairs.
        images: ``[3, H, W]`` images in [0, 1] (sent one at a time).
        snrs: SNRs in dB; each image is sent once per SNR per repeat.

    Returns:
        one row per (scheme, SNR): ``{"scheme", "snr_db", "encode", "channel", "denoise",
        "decode", "total", "images_per_s"}`` (seconds per image).
    """
    rows = []
    for label, scheme in schemes:
        x0 = images[0].unsqueeze(0)
        dev = x0.device  # the generators live where the noise is drawn
        scheme.transmit(x0, channel, float(snrs[0]), torch.Generator(dev).manual_seed(seed))
        for snr in snrs:
            acc = dict.fromkeys(STAGES, 0.0)
            n = 0
            t0 = time.perf_counter()
            for _ in range(repeats):
                for i, img in enumerate(images):
                    g = torch.Generator(dev).manual_seed(seed + i)
                    tx = scheme.transmit(img.unsqueeze(0), channel, float(snr), g)
                    for k in STAGES:
                        acc[k] += tx.seconds.get(k, 0.0)
                    n += 1
            total = (time.perf_counter() - t0) / n
            row = {"scheme": label, "snr_db": float(snr)}
            row.update({k: v / n for k, v in acc.items()})
            row["total"] = total
            row["images_per_s"] = 1.0 / total if total > 0 else float("inf")
            rows.append(row)
    return rows


def add_ratios(rows: list[dict], reference: str) -> list[dict]:
    """Add to each :func:`bench_schemes` row ``rx_ratio``: its receiver's time (denoise +
    decode) over the plain decoder's of scheme ``reference`` at the same SNR (NaN where that
    scheme has no row), and ``reference``. Returns ``rows``."""
    ref = {r["snr_db"]: r["decode"] for r in rows if r["scheme"] == reference}
    for r in rows:
        dec = ref.get(r["snr_db"])
        r["rx_ratio"] = (r["denoise"] + r["decode"]) / dec if dec else float("nan")
        r["reference"] = reference
    return rows


def format_bench(rows: list[dict]) -> str:
    """A table of :func:`bench_schemes` rows, with the receiver ratio column when the rows
    carry it (:func:`add_ratios`)."""
    cols = ["scheme", "snr_db", *STAGES, "total", "images_per_s"]
    ratio = bool(rows) and "rx_ratio" in rows[0]
    if ratio:
        cols.append(f"rx/{rows[0]['reference']}-decode")
    lines = ["  ".join(f"{c:>12s}" for c in cols)]
    for r in rows:
        vals = [f"{r['scheme']:>12s}", f"{r['snr_db']:12g}"]
        vals += [f"{r[k]:12.4f}" for k in (*STAGES, "total")]
        vals.append(f"{r['images_per_s']:12.2f}")
        if ratio:
            vals.append(f"{r['rx_ratio']:12.2f}")
        lines.append("  ".join(vals))
    return "\n".join(lines)
