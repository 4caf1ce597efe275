"""Training task of the learned pilot-free SNR estimator (``semcom train snr-estimator``).

Same data path as the denoiser task (clean latents of a frozen codec, cached; random crops of
the unit-power latents). Per crop an SNR is drawn uniform in dB over ``snr_range``, the
normalised received latent ``sqrt(a) f + sqrt(1-a) n`` (``a = gamma/(1+gamma)``) is formed and
the network's logit is regressed on ``ln gamma`` (:mod:`semcom.estimation.learned`).
Validation: RMSE of the estimate in dB on whole held-out latents at a few SNRs.

Calibration stage (``--calibrate RUN``): the CNN of RUN is kept frozen and a new, standardised
head is fitted on a bank of pooled features of *whole* training latents (``draws`` noisy copies
of each, SNR uniform in dB, drawn once from the seed), so the head sees the feature statistics a
receiver sees (:mod:`semcom.estimation.learned`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..diffusion.latents import unit_power
from ..estimation.learned import DB_PER_NEPER, SNREstimator, SNREstimatorConfig
from .denoiser import DenoiserTask, LatentTaskConfig


@dataclass
class SNREstimatorTaskConfig(LatentTaskConfig):
    """Options of the SNR-estimator task (stored in the card)."""

    val_snrs: list[float] = field(default_factory=lambda: [-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0])
    width: int = 32
    blocks: int = 3
    #: calibration stage: keep the CNN of this estimator (run folder, file or zoo name; its
    #: architecture replaces width/blocks) and fit a new head on whole latents
    calibrate: str | None = None
    #: noisy copies of each whole training latent in the calibration bank
    draws: int = 2
    head_depth: int = 1
    head_width: int = 0
    #: the head also reads the multi-scale power ratios (:func:`.learned.scale_stats`)
    scale_stats: bool = False


def received(f: Tensor, snr_db: Tensor, generator: torch.Generator) -> Tensor:
    """Normalised received latent ``sqrt(a) f + sqrt(1-a) n`` for per-item SNRs ``[B]`` (dB)."""
    gamma = torch.pow(10.0, snr_db / 10.0)
    a = (gamma / (1.0 + gamma)).to(f.dtype).view(-1, *([1] * (f.dim() - 1)))
    n = torch.randn(f.shape, generator=generator, device=f.device, dtype=f.dtype)
    return a.sqrt() * f + (1.0 - a).sqrt() * n


class SNREstimatorTask(DenoiserTask):
    """:class:`semcom.train.engine.Task` training an :class:`SNREstimator` on clean latents."""

    name = "snr-estimator"
    # its own config: the DenoiserTask paths it shares read LatentTaskConfig's fields only
    config: SNREstimatorTaskConfig  # type: ignore[assignment]

    def __init__(self, config: SNREstimatorTaskConfig) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        if config.draws < 1:
            raise ValueError(f"--draws must be >= 1, got {config.draws}")
        self.init_info: dict[str, Any] = {}
        self._cnn: SNREstimator | None = None
        self._bank: tuple[Tensor, Tensor] | None = None
        if config.calibrate:
            self._cnn = self._read_cnn(config)
        self._model_config(channels=1)  # validates the head options before anything is written

    def _read_cnn(self, config: SNREstimatorTaskConfig) -> SNREstimator:
        """Load ``--calibrate`` and take its CNN's architecture into ``config`` (true card)."""
        from ..estimation.learned import load_snr_estimator
        from ..zoo import init_ref, resolve_weights, sha256_file

        ref = resolve_weights(config.calibrate)  # type: ignore[arg-type]
        self._cnn_ref = ref
        model = load_snr_estimator(ref, codec=config.codec)
        config.width, config.blocks = model.config.width, model.config.blocks
        self.init_info = {
            "init": init_ref(config.calibrate),  # type: ignore[arg-type]
            "init_sha256": sha256_file(ref),
        }
        return model

    def _model_config(self, channels: int) -> SNREstimatorConfig:
        c = self.config
        return SNREstimatorConfig(
            channels=channels,
            width=c.width,
            blocks=c.blocks,
            snr_range=tuple(c.snr_range),  # type: ignore[arg-type]
            head_depth=c.head_depth,
            head_width=c.head_width,
            feature_norm=bool(c.calibrate),
            scale_stats=c.scale_stats,
        )

    def build_model(self) -> nn.Module:
        """A fresh :class:`SNREstimator`, or with ``calibrate`` the given one's frozen CNN with
        a new head (its feature bank and standardisation computed here)."""
        self._load()
        model = SNREstimator(self._model_config(self._train[0].shape[0]))  # type: ignore[index]
        if self._cnn is None:
            return model
        if self._cnn.config.channels != model.config.channels:
            raise ValueError(
                f"--calibrate {self.config.calibrate!r} reads {self._cnn.config.channels}-channel "
                f"latents, these have {model.config.channels}"
            )
        from ..diffusion.checkpoint import check_codec_weights

        # its features were learnt on one codec's latents: calibrated on those only
        check_codec_weights(self._cnn_ref, "--calibrate estimator", self.codec_fp)
        model.stem.load_state_dict(self._cnn.stem.state_dict())
        model.blocks.load_state_dict(self._cnn.blocks.state_dict())
        model.stem.requires_grad_(False)
        model.blocks.requires_grad_(False)
        self._bank = self._feature_bank(model)
        feats = self._bank[0]
        model.feat_mean.copy_(feats.mean(0))
        model.feat_std.copy_(feats.std(0).clamp_min(1e-6))
        return model

    @torch.no_grad()
    def _feature_bank(self, model: SNREstimator) -> tuple[Tensor, Tensor]:
        """Pooled features ``[N, n_features]`` of ``draws`` noisy copies of every whole training
        latent and their targets ``ln gamma`` ``[N]`` (deterministic in the seed)."""
        from tqdm import tqdm

        c = self.config
        lo, hi = c.snr_range
        g = torch.Generator().manual_seed(c.seed + 777)
        feats, targets = [], []
        for _ in range(c.draws):
            # a bar on the main process unless --quiet (disable=None: and only on a terminal)
            bar = tqdm(
                self._train,
                desc="calibration features",
                leave=False,
                disable=None if self.progress else True,
            )
            for x0 in bar:
                snr = lo + (hi - lo) * torch.rand(1, generator=g)
                feats.append(model.features(received(unit_power(x0.unsqueeze(0)), snr, g)))
                targets.append(snr / DB_PER_NEPER)
        return torch.cat(feats), torch.cat(targets).float()

    def train_dataset(self) -> Dataset:
        """The denoiser's latent crops, or with ``calibrate`` the feature bank's ``(features
        [n_features], ln gamma)`` pairs."""
        if not self.config.calibrate:
            return super().train_dataset()
        self._load()
        assert self._bank is not None, "build_model() first"
        feats, targets = self._bank
        return list(zip(feats, targets, strict=True))  # type: ignore[return-value]

    # a calibration batch is a pair (features, targets): unlike the denoiser's, not a Tensor
    def collate(self, items: list) -> Tensor | tuple[Tensor, Tensor]:  # type: ignore[override]
        """Crops -> ``[B, C, crop, crop]``; bank pairs -> ``([B, n_features], [B])``."""
        if not self.config.calibrate:
            return torch.stack(items)
        return torch.stack([f for f, _ in items]), torch.stack([t for _, t in items])

    def model_metadata(self, model: nn.Module) -> dict[str, str]:
        """The checkpoint's metadata: the estimator's architecture and the codec it reads."""
        assert isinstance(model, SNREstimator)
        return {
            "task": self.name,
            "estimator_config": json.dumps(model.config.to_dict()),
            "codec": self.config.codec,
            "cbr": str(self.config.cbr),
            "codec_fingerprint": self.codec_fp,
        }

    def loss(
        self, model: nn.Module, batch: Tensor | tuple[Tensor, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """MSE of the logit against ``ln gamma`` (natural log of the linear SNR, drawn
        uniformly in dB over ``snr_range``) on noised latent crops, or on a bank batch; logs
        the loss and its RMSE in dB."""
        if isinstance(batch, tuple):  # calibration: a batch of the feature bank
            feats, target = batch
            loss = (model(feats=feats) - target).pow(2).mean()
        else:
            lo, hi = self.config.snr_range
            snr = lo + (hi - lo) * torch.rand(
                batch.shape[0], generator=generator, device=batch.device
            )
            logit = model(received(batch, snr, generator))
            loss = (logit - snr / DB_PER_NEPER).pow(2).mean()
        val = loss.detach()  # tensors: the trainer reads them with the loss, one host sync
        return loss, {"loss": val, "rmse_db": DB_PER_NEPER * val.double().sqrt()}

    @torch.no_grad()
    def validate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """RMSE in dB of the SNR estimate on the whole validation latents: ``rmse_db@{snr}dB``
        per validation SNR (dB) and over all of them, ``rmse_db`` (seeded noise)."""
        assert isinstance(model, SNREstimator)
        was = model.training
        model.eval()
        g = torch.Generator().manual_seed(self.config.seed + 12345)
        dev = next(model.parameters()).device
        out: dict[str, float] = {}
        sq_all = []
        for snr in self.config.val_snrs:
            sq = []
            for x0 in self._val:  # type: ignore[union-attr]
                f = unit_power(x0.unsqueeze(0))  # noise drawn on the CPU: same on any device
                y = received(f, torch.tensor([snr]), g).to(dev)
                gamma, _ = model.estimate(y)
                sq.append((10 * math.log10(float(gamma)) - snr) ** 2)
            out[f"rmse_db@{snr:g}dB"] = math.sqrt(sum(sq) / len(sq))
            sq_all += sq
        out["rmse_db"] = math.sqrt(sum(sq_all) / len(sq_all))
        model.train(was)
        return out

    def card(self) -> dict[str, Any]:
        """The denoiser task's card entries, as an ``snr-estimator``, with ``calibrate``'s
        lineage."""
        card = super().card()
        card["model"] = "snr-estimator"
        card.update(self.init_info)
        card["model_config"] = asdict(self.config)
        return card
