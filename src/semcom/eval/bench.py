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


def format_bench(rows: list[dict], reference: str | None = None) -> str:
    """A table of :func:`bench_schemes` rows; with ``reference`` (a scheme label) add the ratio
    of each receiver (denoise + decode) to the reference's plain decoder at the same SNR."""
    ref = {r["snr_db"]: r["decode"] for r in rows if r["scheme"] == reference}
    cols = ["scheme", "snr_db", *STAGES, "total", "images_per_s"]
    if ref:
        cols.append(f"rx/{reference}-decode")
    lines = ["  ".join(f"{c:>12s}" for c in cols)]
    for r in rows:
        vals = [f"{r['scheme']:>12s}", f"{r['snr_db']:12g}"]
        vals += [f"{r[k]:12.4f}" for k in (*STAGES, "total")]
        vals.append(f"{r['images_per_s']:12.2f}")
        if ref:
            dec = ref.get(r["snr_db"])
            ratio = (r["denoise"] + r["decode"]) / dec if dec else float("nan")
            vals.append(f"{ratio:12.2f}")
        lines.append("  ".join(vals))
    return "\n".join(lines)
