"""Registers the diffusion-receiver schemes ``vae+dm``, ``deepjscc+dm``, ``adjscc+dm``.

Each is the base codec's :class:`~semcom.link.AnalogLink` with the plain LMMSE receiver replaced
by :class:`~semcom.diffusion.samplers.DiffusionReceiver` around the shipped denoiser trained on
that codec's clean latents. One denoiser serves every SNR. Options (``semcom eval``/``transmit``
flags): ``matching`` in {continuous, vp, ddm}, ``steps`` K >= 1, ``fading`` in
{waterfill, reference, naive} (per-element noise levels under fast fading) with
``fading_grid`` in {time, quantile}, ``dm_stop`` in {auto, clean} (``auto``: stop the
reverse process at the training SNR of a decoder trained at one SNR), ``snr_source`` in
{known, moment, learned} (:mod:`semcom.estimation`; ``estimator_path`` overrides the shipped
learned estimator).
"""

from __future__ import annotations

import torch

from ..link import AnalogLink
from ..schemes import SchemeSpec, register_scheme

MATCHING_RULES = ("continuous", "vp", "ddm")
FADING_VARIANTS = ("waterfill", "reference", "naive")
FADING_GRIDS = ("time", "quantile")
#: where the reverse process stops: ``auto`` = at the training SNR of a JSCC decoder trained at
#: one SNR (DeepJSCC), else at the clean latent; ``clean`` = always at the clean latent.
DM_STOPS = ("auto", "clean")


def build_dm_link(
    base: str,
    cbr: float | None,
    device: torch.device,
    matching: str = "continuous",
    steps: int = 1,
    fading: str = "waterfill",
    fading_grid: str = "time",
    dm_stop: str = "auto",
    denoiser_path: str | None = None,
    snr_source: str = "known",
    estimator_path: str | None = None,
) -> AnalogLink:
    """Codec ``base`` + its shipped (or the given) denoiser as a scheme named ``base+dm``."""
    from ..channels import format_cbr
    from .checkpoint import check_codec_weights, find_denoiser, load_denoiser
    from .samplers import DiffusionReceiver

    if matching not in MATCHING_RULES:
        raise ValueError(f"--matching must be one of {', '.join(MATCHING_RULES)}, got {matching!r}")
    if fading not in FADING_VARIANTS:
        raise ValueError(f"fading must be one of {', '.join(FADING_VARIANTS)}, got {fading!r}")
    if int(steps) < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if fading_grid not in FADING_GRIDS:
        raise ValueError(
            f"--fading-grid must be one of {', '.join(FADING_GRIDS)}, got {fading_grid!r}"
        )
    if dm_stop not in DM_STOPS:
        raise ValueError(f"--dm-stop must be one of {', '.join(DM_STOPS)}, got {dm_stop!r}")
    stop_snr_db = None
    if base == "vae":
        from ..codecs.taef2 import load_taef2

        if cbr is not None and abs(cbr - 1 / 12) > 1e-3:
            raise ValueError(f"scheme 'vae+dm' has a fixed CBR of 1/12 (got --cbr {cbr:.4g})")
        codec = load_taef2(device)
        cbr_key = None
    else:
        from ..zoo import find_checkpoint, load_codec

        codec = load_codec(base, cbr, device)
        cbr_key = format_cbr(codec.latent_shape(96, 96)[0] / 96)
        if dm_stop == "auto" and matching == "continuous":
            # a decoder trained at one SNR gets latents at that SNR
            try:
                stop_snr_db = float(find_checkpoint(base, codec.cbr).snr_train)
            except ValueError:  # an SNR range (ADJSCC): its decoder adapts, denoise fully
                stop_snr_db = None
    path = denoiser_path or find_denoiser(base, cbr_key).weights
    den = load_denoiser(
        path, codec=base, cbr=cbr_key, latent_channels=codec.latent_shape(8, 8)[0], device=device
    )
    check_codec_weights(path, "denoiser", codec)
    receiver = DiffusionReceiver(
        den,
        p0=den.p0,
        rule=matching,
        steps=int(steps),
        fading=fading,
        fading_grid=fading_grid,  # type: ignore[arg-type]
        stop_snr_db=stop_snr_db,
        name="dm",
    )
    estimator = None
    if snr_source == "learned":
        from ..estimation.learned import load_snr_estimator
        from .checkpoint import find_latent_model

        est_path = estimator_path or find_latent_model("snr-estimator", base, cbr_key).weights
        estimator = load_snr_estimator(
            est_path, codec=base, latent_channels=codec.latent_shape(8, 8)[0], device=device
        )
        check_codec_weights(est_path, "SNR estimator", codec)
    return AnalogLink(
        codec,
        receiver,
        name=f"{base}+dm",
        fixed_cbr=base == "vae",
        snr_source=snr_source,
        estimator=estimator,
    )


def _factory(base: str):
    def factory(cbr: float | None, device: torch.device, **options) -> AnalogLink:
        return build_dm_link(base, cbr, device, **options)

    return factory


for _base, _desc in (
    ("vae", "paper A: TAEF2 latent + step-matched diffusion denoiser (one model, all SNRs)"),
    ("deepjscc", "paper B setting: DeepJSCC latent + step-matched diffusion denoiser"),
    ("adjscc", "paper B setting: ADJSCC latent + step-matched diffusion denoiser"),
):
    register_scheme(
        SchemeSpec(
            name=f"{_base}+dm",
            description=_desc,
            factory=_factory(_base),
            cbrs=(1 / 12,) if _base == "vae" else None,
            requires=f"a shipped denoiser for {_base} latents (see 'semcom zoo list')",
            options=(
                "matching",
                "steps",
                "fading",
                "fading_grid",
                "dm_stop",
                "denoiser_path",
                "snr_source",
                "estimator_path",
            ),
        )
    )
