"""Does the adjscc+dm denoiser gain from seeing each latent only at its own SNR? (on demand, not
a test; issue #4's probe.)

    SEMCOM_DATA=... python benchmarks/denoiser_paired_encode_snr.py [--steps 400] [--lr 1e-4]
        [--val-images 16] [--threads 1] [--seed 0] [--train-data bsds500-train]
        [--val-data bsds500-val] [--batch-size 16]

ADJSCC latents depend on the SNR the encoder is told, so the shipped denoiser
(``denoiser-adjscc-c6-bsds``) learns the mixture of latents encoded at -5, 0, ..., 20 dB, each
under noise of any SNR in -20...40 dB. At the receiver a latent encoded at s dB always arrives
at s dB. Here two copies of the shipped denoiser are tuned for ``--steps`` steps (batches of
``--batch-size`` crops of 32x32, AdamW at a constant ``--lr``) with the same noise law, the SNR
uniform within 2.5 dB of an encoder SNR (down to -12.5 dB below -5): *paired*, each latent at
its own encoder SNR, and a *control*, each latent at a random one of them (the same amount of
training at the same noise levels, without the pairing). Printed: the latent-MSE gain over
LMMSE (dB) on ``--val-images`` bsds500-val latents encoded at the test SNR, under noise at that
SNR (the same draws for all three), at -5 / 0 / 5 dB: the shipped denoiser, paired and control.
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import numpy as np
import torch
from torch import Tensor

from semcom.diffusion.checkpoint import load_denoiser
from semcom.diffusion.denoiser import LatentUNet
from semcom.diffusion.latents import unit_power
from semcom.train.denoiser import codec_for, get_latents, level_for_snr

ENCODE_SNRS = [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0]  # the shipped denoiser's (its card)
TEST_SNRS = (-5.0, 0.0, 5.0)
CROP, BATCH = 32, 16


def gains(net: LatentUNet, val: list[Tensor], p0: float, n: int) -> dict[float, float]:
    """Latent-MSE gain over LMMSE (dB) per test SNR, val latents encoded at that SNR."""
    net.eval()
    g = torch.Generator().manual_seed(123)
    out = {}
    with torch.no_grad():
        for s in TEST_SNRS:
            j = ENCODE_SNRS.index(s)
            v = float(level_for_snr(torch.tensor(s), p0))
            lmmse = mse = 0.0
            for k in range(n):
                x0 = val[len(ENCODE_SNRS) * k + j].unsqueeze(0)  # image-major order
                xt = math.sqrt(1 - v) * x0 + math.sqrt(v) * torch.randn(x0.shape, generator=g)
                est = xt * math.sqrt(1 - v) * p0 / ((1 - v) * p0 + v)
                lmmse += float((est - x0).pow(2).mean())
                mse += float((net(xt, torch.tensor([v])) - x0).pow(2).mean())
            out[s] = 10 * math.log10(lmmse / mse)
    return out


def tune(
    base: LatentUNet,
    train: list[Tensor],
    paired: bool,
    steps: int,
    lr: float,
    seed: int,
    batch: int = BATCH,
) -> LatentUNet:
    net = copy.deepcopy(base).float().train().requires_grad_(True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    p0 = base.config.p0
    for _ in range(steps):
        crops, snrs = [], []
        for i in rng.integers(0, len(train), batch):
            lat = train[i]
            h, w = lat.shape[-2:]
            top, left = rng.integers(0, h - CROP + 1), rng.integers(0, w - CROP + 1)
            crops.append(lat[:, top : top + CROP, left : left + CROP])
            n_snr = len(ENCODE_SNRS)
            e = ENCODE_SNRS[i % n_snr if paired else rng.integers(0, n_snr)]
            snrs.append(rng.uniform(-12.5 if e == ENCODE_SNRS[0] else e - 2.5, e + 2.5))
        x = torch.stack(crops)
        v = level_for_snr(torch.tensor(snrs), p0).float().view(-1, 1, 1, 1)
        xt = (1 - v).sqrt() * x + v.sqrt() * torch.randn(x.shape, generator=g)
        loss = (net(xt, v.flatten()) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--val-images", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=BATCH, help="latent crops per step")
    ap.add_argument("--train-data", default="bsds500-train", help="latents to tune on")
    ap.add_argument("--val-data", default="bsds500-val", help="latents to measure on")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    codec = codec_for("adjscc", "1/16")
    train, _ = get_latents("adjscc", "1/16", args.train_data, True, codec, ENCODE_SNRS)
    val, _ = get_latents("adjscc", "1/16", args.val_data, False, codec, ENCODE_SNRS)
    train = [unit_power(t.unsqueeze(0))[0] for t in train]
    val = [unit_power(t.unsqueeze(0))[0] for t in val]
    base = load_denoiser("denoiser-adjscc-c6-bsds", "adjscc", "1/16")
    p0 = base.config.p0

    def show(name: str, net: LatentUNet) -> None:
        got = gains(net, val, p0, args.val_images)
        print(name, " / ".join(f"{got[s]:.3f}" for s in TEST_SNRS), "dB", flush=True)

    print(f"latent-MSE gain over LMMSE at {' / '.join(f'{s:g}' for s in TEST_SNRS)} dB")
    show("shipped", base)
    for paired in (True, False):
        t0 = time.perf_counter()
        net = tune(base, train, paired, args.steps, args.lr, args.seed, args.batch_size)
        show(f"{'paired' if paired else 'control'} ({time.perf_counter() - t0:.0f} s)", net)


if __name__ == "__main__":
    main()
