"""Training task of the learned pilot-free SNR estimator (``semcom train snr-estimator``).

Same data path as the denoiser task (clean latents of a frozen codec, cached; random crops of
the unit-power latents). Per crop an SNR is drawn uniform in dB over ``snr_range``, the
normalised received latent ``sqrt(a) f + sqrt(1-a) n`` (``a = gamma/(1+gamma)``) is formed and
the network's logit is regressed on ``ln gamma`` (:mod:`semcom.estimation.learned`).
Validation: RMSE of the estimate in dB on whole held-out latents at a few SNRs.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..diffusion.latents import unit_power
from ..estimation.learned import DB_PER_NEPER, SNREstimator, SNREstimatorConfig
from .denoiser import DenoiserTask, LatentTaskConfig


@dataclass
class SNREstimatorTaskConfig(LatentTaskConfig):
    """Options of the SNR-estimator task (stored in the card)."""

    val_snrs: list[float] = field(default_factory=lambda: [-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0])
    width: int = 32
    blocks: int = 3


def received(f: Tensor, snr_db: Tensor, generator: torch.Generator) -> Tensor:
    """Normalised received latent ``sqrt(a) f + sqrt(1-a) n`` for per-item SNRs ``[B]`` (dB)."""
    gamma = torch.pow(10.0, snr_db / 10.0)
    a = (gamma / (1.0 + gamma)).to(f.dtype).view(-1, *([1] * (f.dim() - 1)))
    n = torch.randn(f.shape, generator=generator, device=f.device, dtype=f.dtype)
    return a.sqrt() * f + (1.0 - a).sqrt() * n


class SNREstimatorTask(DenoiserTask):
    """:class:`semcom.train.engine.Task` training an :class:`SNREstimator` on clean latents."""

    name = "snr-estimator"

    def __init__(self, config: SNREstimatorTaskConfig) -> None:  # type: ignore[override]
        super().__init__(config)  # type: ignore[arg-type]

    def build_model(self) -> nn.Module:
        self._load()
        c = self.config
        cfg = SNREstimatorConfig(
            channels=self._train[0].shape[0],  # type: ignore[index]
            width=c.width,
            blocks=c.blocks,
            snr_range=tuple(c.snr_range),  # type: ignore[arg-type]
        )
        return SNREstimator(cfg)

    def model_metadata(self, model: nn.Module) -> dict[str, str]:
        assert isinstance(model, SNREstimator)
        return {
            "task": self.name,
            "estimator_config": json.dumps(model.config.to_dict()),
            "codec": self.config.codec,
            "cbr": str(self.config.cbr),
            "codec_fingerprint": self.codec_fp,
        }

    def loss(
        self, model: nn.Module, batch: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]:
        lo, hi = self.config.snr_range
        snr = lo + (hi - lo) * torch.rand(batch.shape[0], generator=generator, device=batch.device)
        logit = model(received(batch, snr, generator))
        loss = (logit - snr / DB_PER_NEPER).pow(2).mean()
        val = float(loss.detach())
        return loss, {"loss": val, "rmse_db": DB_PER_NEPER * math.sqrt(val)}

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        assert isinstance(model, SNREstimator)
        was = model.training
        model.eval()
        g = torch.Generator().manual_seed(self.config.seed + 12345)
        out: dict[str, float] = {}
        sq_all = []
        for snr in self.config.val_snrs:
            sq = []
            for x0 in self._val:  # type: ignore[union-attr]
                f = unit_power(x0.unsqueeze(0))
                gamma, _ = model.estimate(received(f, torch.tensor([snr]), g))
                sq.append((10 * math.log10(float(gamma)) - snr) ** 2)
            out[f"rmse_db@{snr:g}dB"] = math.sqrt(sum(sq) / len(sq))
            sq_all += sq
        out["rmse_db"] = math.sqrt(sum(sq_all) / len(sq_all))
        model.train(was)
        return out

    def card(self) -> dict[str, Any]:
        card = super().card()
        card["model"] = "snr-estimator"
        card["model_config"] = asdict(self.config)
        return card
