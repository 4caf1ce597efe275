"""Where a learned SNR estimator's error comes from (on demand, not a test): the image or the
noise draw.

    SEMCOM_DATA=... python benchmarks/snr_error_split.py [--codec deepjscc] [--cbr 1/16]
        [--estimator snr-estimator-deepjscc-c6-bsds] [--data kodak] [--snr -10 -5 0]
        [--draws 4] [--seed 0]

Each image's clean unit-power latent is received ``--draws`` times at each SNR
(``sqrt(a) f + sqrt(1-a) n``, as in training) and the estimate's error in dB is split into
the bias (mean over images and draws), the per-image spread (standard deviation over images of
each image's mean error, less the draw noise left in those means: what the image's code does to
the estimate) and the draw-to-draw spread (root mean within-image variance: what the noise
realisation does).
"""

from __future__ import annotations

import argparse
import math

import torch

from semcom.diffusion.latents import unit_power
from semcom.estimation.learned import load_snr_estimator
from semcom.train.denoiser import codec_for, get_latents
from semcom.train.snr_estimator import received
from semcom.zoo import resolve_weights


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="deepjscc")
    ap.add_argument("--cbr", default="1/16")
    ap.add_argument("--estimator", default="snr-estimator-deepjscc-c6-bsds")
    ap.add_argument("--data", default="kodak")
    ap.add_argument("--snr", type=float, nargs="+", default=[-10.0, -5.0, 0.0])
    ap.add_argument("--draws", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    codec = codec_for(args.codec, args.cbr)
    latents, _ = get_latents(args.codec, args.cbr, args.data, False, codec)
    est = load_snr_estimator(resolve_weights(args.estimator), codec=args.codec).eval()
    g = torch.Generator().manual_seed(args.seed)
    print(f"{args.estimator} on {len(latents)} {args.data} latents x {args.draws} draws (dB)")
    print(f"{'SNR':>6} {'RMSE':>6} {'bias':>6} {'image':>6} {'draw':>6}")
    for snr in args.snr:
        err = torch.empty(len(latents), args.draws, dtype=torch.float64)
        for i, x0 in enumerate(latents):
            f = unit_power(x0.unsqueeze(0))
            for k in range(args.draws):
                gamma, _ = est.estimate(received(f, torch.tensor([snr]), g))
                err[i, k] = 10 * math.log10(float(gamma)) - snr
        rmse = float(err.pow(2).mean().sqrt())
        draw_var = float(err.var(1).mean())
        image = math.sqrt(max(float(err.mean(1).var()) - draw_var / args.draws, 0.0))
        draw = math.sqrt(draw_var)
        print(f"{snr:6g} {rmse:6.2f} {float(err.mean()):+6.2f} {image:6.2f} {draw:6.2f}")


if __name__ == "__main__":
    main()
