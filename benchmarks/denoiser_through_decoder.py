"""Does the adjscc+dm denoiser gain from end-to-end tuning through its decoder? (on demand,
not a test; issue #4's probe.)

    SEMCOM_DATA=... python benchmarks/denoiser_through_decoder.py [--steps 1000] [--lr 5e-5]
        [--snr-max 10] [--val-images 16] [--threads 2] [--seed 0] [--out tuned.pt]
        [--batch-size 16]

The shipped denoiser was trained on latent MSE (x0 prediction), the shipped decoder behind it
on image PSNR. Here the denoiser is tuned on image PSNR *through* the frozen behind-dm decoder
(``adjscc-c6-bsds-awgn-5-20-dmdec``): BSDS500-train 128×128 crops, batches of ``--batch-size``,
SNR uniform in [-5, ``--snr-max``] dB (from ``TUNED_SKIP_SNR_DB`` up the receiver skips the
denoiser, so images there carry no gradient), K = 1, Adam with a 50-step warm-up and a cosine
decay. Printed: PSNR (8-bit, per image, mean) on ``--val-images`` bsds500-val 256×256 centre
crops at -5 / 0 / 5 dB, before and after, same noise draws.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from semcom.channels import Channel
from semcom.codecs.jscc import _received, load_jscc
from semcom.data import get_dataset
from semcom.data.datasets import collate_images
from semcom.diffusion.registry import TUNED_SKIP_SNR_DB, dm_receiver
from semcom.metrics import psnr
from semcom.train.jscc import reconstruction_loss
from semcom.zoo import resolve_weights

VAL_SNRS = (-5.0, 0.0, 5.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--snr-max", type=float, default=TUNED_SKIP_SNR_DB)
    ap.add_argument("--val-images", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16, help="training crops per step")
    ap.add_argument("--out", default=None, help="save the tuned denoiser's state dict here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    codec = load_jscc(resolve_weights("adjscc-c6-bsds-awgn-5-20"))
    decoder = load_jscc(resolve_weights("adjscc-c6-bsds-awgn-5-20-dmdec")).requires_grad_(False)
    rx = dm_receiver(codec, "adjscc", None, "cpu", steps=1, skip_snr_db=TUNED_SKIP_SNR_DB)
    denoiser = rx.denoise.requires_grad_(True)  # loaded frozen, for inference
    channel = Channel("awgn")

    def reconstruct(x: Tensor, snr: Tensor, g: torch.Generator) -> Tensor:
        with torch.no_grad():
            f_tilde, d, dec_snr = _received(codec.encode(x, snr.float()), channel, snr, g)
        side = rx(f_tilde, d, g)
        return decoder.decode((1 - d).sqrt() * f_tilde, x.shape[-2:], dec_snr, side=side)

    val = get_dataset("bsds500-val", crop=256, random_crop=False, seed=args.seed)
    val_x = collate_images([val[i] for i in range(min(args.val_images, len(val)))])

    @torch.no_grad()
    def validate() -> dict[float, Tensor]:
        denoiser.eval()
        out = {}
        for s in VAL_SNRS:
            g = torch.Generator().manual_seed(args.seed + 123)
            snr = torch.full((val_x.shape[0],), s, dtype=torch.float64)
            out[s] = psnr(reconstruct(val_x, snr, g).clamp(0, 1), val_x)
        return out

    before = validate()
    print("before", {s: round(float(v.mean()), 3) for s, v in before.items()}, flush=True)

    train = get_dataset("bsds500-train", crop=128, random_crop=True, flip=True, seed=args.seed)
    loader = DataLoader(
        train,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate_images,
        generator=torch.Generator().manual_seed(args.seed),
    )
    opt = torch.optim.Adam(denoiser.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / 50) * 0.5 * (1 + math.cos(math.pi * k / args.steps))
    )
    g = torch.Generator().manual_seed(args.seed + 1)
    step, t0, running = 0, time.time(), None
    while step < args.steps:
        for x in loader:
            if step >= args.steps:
                break
            denoiser.train()
            lo, hi = -5.0, args.snr_max
            snr = lo + (hi - lo) * torch.rand(x.shape[0], generator=g, dtype=torch.float64)
            loss, log = reconstruction_loss(reconstruct(x, snr, g), x, "psnr")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            psnr_now = float(log["psnr"])
            running = psnr_now if running is None else 0.98 * running + 0.02 * psnr_now
            if step % 50 == 0:
                print(f"step {step}  {time.time() - t0:.0f} s  train PSNR {running:.3f} dB")
    after = validate()
    print("after", {s: round(float(v.mean()), 3) for s, v in after.items()})
    print("gain (dB)", {s: round(float((after[s] - before[s]).mean()), 3) for s in VAL_SNRS})
    if args.out:
        torch.save(denoiser.state_dict(), args.out)


if __name__ == "__main__":
    main()
