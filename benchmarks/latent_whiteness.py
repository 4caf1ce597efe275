"""How white a JSCC codec's latents are (on demand, not a test): what the SNR estimator and the
denoiser have to work with.

    SEMCOM_DATA=... python benchmarks/latent_whiteness.py [--codec deepjscc] [--cbr 1/16]
        [--ref deepjscc-c6-bsds-awgn10 deepjscc-c6-bsds-awgn10-long] [--data bsds500-val]

For each checkpoint (zoo name or file) prints, averaged over the images' unit-power latents
``[C, h, w]``: the lag-1 correlation coefficient along width and along height (pooled over
channels), and the smallest eigenvalue of the covariance of 2x2xC patches over their mean
eigenvalue (1 for white noise; small when the latent is predictable from its neighbours).
"""

from __future__ import annotations

import argparse

import torch

from semcom.data import get_dataset
from semcom.diffusion.latents import encode_images, unit_power
from semcom.train.denoiser import codec_for


def lag1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Correlation coefficient of two equally shaped tensors (zero-mean model)."""
    return float((a * b).mean() / ((a * a).mean() * (b * b).mean()).sqrt())


def whiteness(z: torch.Tensor) -> tuple[float, float, float]:
    """(lag-1 along width, lag-1 along height, min/mean eigenvalue of 2x2xC patches) of ``z``."""
    f = unit_power(z.unsqueeze(0))[0]
    c = f.shape[0]
    w = lag1(f[:, :, :-1], f[:, :, 1:])
    h = lag1(f[:, :-1, :], f[:, 1:, :])
    p = f.unfold(1, 2, 2).unfold(2, 2, 2).permute(1, 2, 0, 3, 4).reshape(-1, 4 * c)
    ev = torch.linalg.eigvalsh(p.T @ p / p.shape[0])
    return w, h, float(ev[0] / ev.mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--codec", default="deepjscc")
    p.add_argument("--cbr", default="1/16")
    p.add_argument(
        "--ref", nargs="+", default=["deepjscc-c6-bsds-awgn10", "deepjscc-c6-bsds-awgn10-long"]
    )
    p.add_argument("--data", default="bsds500-val")
    args = p.parse_args()
    ds = get_dataset(args.data)
    for ref in args.ref:
        lats = encode_images(codec_for(args.codec, args.cbr, ref=ref), ds, flips=False)
        rows = torch.tensor([whiteness(z) for z in lats]).mean(dim=0).tolist()
        print(
            f"{ref}: lag-1 {rows[0]:.3f} (width) / {rows[1]:.3f} (height), 2x2xC patch "
            f"min/mean eigenvalue {rows[2]:.3f}, {len(lats)} images of {args.data}"
        )


if __name__ == "__main__":
    main()
