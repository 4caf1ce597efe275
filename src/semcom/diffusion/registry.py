"""Registers the diffusion-receiver schemes ``vae+dm``, ``deepjscc+dm``, ``adjscc+dm``.

Each is the base codec's :class:`~semcom.link.AnalogLink` with the plain LMMSE receiver replaced
by :class:`~semcom.diffusion.receiver.DiffusionReceiver` around the shipped denoiser trained on
that codec's clean latents. One denoiser serves every SNR. Options (``semcom eval``/``transmit``
flags): ``matching`` in {continuous, vp, ddm}, ``steps`` K >= 1, ``fading`` in
{waterfill, reference, naive} (per-element noise levels under fast fading) with
``fading_grid`` in {time, quantile} and ``fading_samples`` >= 1 (water-filling runs averaged),
``dm_stop`` in {auto, clean} (``auto``: stop the
reverse process at the training SNR of a decoder trained at one SNR), ``dm_decoder`` in
{auto, base} or a checkpoint (``auto``: a decoder trained behind this receiver when in the zoo;
a zoo name, run folder or ``.safetensors`` of one trained behind this denoiser), ``snr_source`` in
{known, moment, learned} (:mod:`semcom.estimation`; ``estimator_path`` overrides the shipped
learned estimator).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..fingerprint import codec_fingerprint
from ..link import AnalogLink
from ..names import DM_DECODERS, DM_STOPS, SCHEMES, VAE_CBR
from ..schemes import SchemeSpec, register_scheme
from ..zoo.catalog import listed_cbrs
from .receiver import RULES as MATCHING_RULES
from .receiver import check_receiver_options

if TYPE_CHECKING:
    from ..codecs.base import Codec
    from ..codecs.jscc import DeepJSCC
    from .denoiser import LatentUNet
    from .receiver import DiffusionReceiver

#: with a decoder trained behind the receiver and ``dm_stop="auto"``, images at or above this SNR
#: skip the denoiser (its decoder reads the LMMSE latent twice); ``semcom train jscc --behind-dm``
#: trains behind the same skip. Measured on Kodak AWGN for the first adjscc+dm decoder: skipping
#: changed PSNR by <= 0.01 dB at 10 / 15 / 20 dB and would have cost 0.08 dB at 5 dB.
TUNED_SKIP_SNR_DB = 10.0


def build_dm_link(
    base: str,
    cbr: float | None,
    device: torch.device,
    matching: str = "continuous",
    steps: int = 1,
    fading: str = "naive",
    fading_grid: str = "time",
    fading_samples: int = 1,
    dm_stop: str = "auto",
    dm_decoder: str = "auto",
    denoiser_path: str | None = None,
    snr_source: str = "known",
    estimator_path: str | None = None,
    codec_path: str | None = None,
) -> AnalogLink:
    """Codec ``base`` (shipped, or ``codec_path``) + its shipped (or the given) denoiser as a
    scheme named ``base+dm``."""
    from .checkpoint import check_codec_weights, latent_cbr_key

    def one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{name} ({flag}) must be one of {', '.join(allowed)}, got {value!r}")

    one_of("matching", matching, MATCHING_RULES)  # the receiver calls it "rule"
    one_of("dm_stop", dm_stop, DM_STOPS)
    check_receiver_options(matching, steps, fading, fading_grid, fading_samples)
    if estimator_path and snr_source != "learned":  # it would be loaded for nothing
        raise ValueError(
            f"estimator_path (--snr-estimator) is read with snr_source 'learned' only, got "
            f"{snr_source!r}"
        )
    stop_snr_db = None
    tuned = None
    codec: Codec
    if base == "vae":
        from ..codecs.registry import check_vae_cbr
        from ..codecs.taef2 import load_taef2

        if dm_decoder not in DM_DECODERS:
            raise ValueError("scheme 'vae+dm' runs the TAEF2 decoder: --dm-decoder takes auto|base")
        check_vae_cbr("vae+dm", cbr)
        if codec_path is not None:
            raise ValueError("scheme 'vae+dm' runs the pretrained TAEF2: --codec does not apply")
        codec = load_taef2(device)
    else:
        from ..zoo import load_codec

        codec = load_codec(base, cbr, device, ref=codec_path)
        if codec.dm_side:  # its encoder's codec goes to --codec, the decoder to --dm-decoder
            from ..codecs.registry import behind_dm_refusal

            raise ValueError(behind_dm_refusal(f"{base}+dm", str(codec_path)))
    cbr_key = latent_cbr_key(base, getattr(codec, "cbr", None))
    fingerprint = codec_fingerprint(codec)  # once: each latent model is checked against it
    den_path = denoiser_file(codec, base, denoiser_path, fingerprint=fingerprint)
    # the denoiser first (read once, every check: its codec, CBR, weights), whatever names it
    # (zoo name, run folder, file): a decoder trained behind it is looked up by its hash and
    # read with its codec's architecture
    den = _load_denoiser_for(codec, base, den_path, device, fingerprint)
    if base != "vae":
        from ..codecs.jscc import DeepJSCC
        from ..zoo import codec_snr_train

        assert isinstance(codec, DeepJSCC)  # load_codec's
        if dm_decoder != "base":
            ref = None if dm_decoder == "auto" else dm_decoder
            tuned = tuned_decoder(codec, base, den_path, device, ref)
        if tuned is None and dm_stop == "auto" and matching == "continuous":
            # a decoder trained at one SNR gets latents at that SNR; one trained over a range
            # (ADJSCC) adapts: denoise fully
            from ..train.jscc import parse_snr_train

            try:
                lo, hi = parse_snr_train(codec_snr_train(base, codec.cbr, codec_path))
            except ValueError as e:  # e.g. a bare .safetensors: no card, no training SNR
                raise ValueError(
                    f"{e}; {base}+dm stops denoising at the SNR its codec was trained at "
                    "(--dm-stop auto): give the codec its card, or --dm-stop clean"
                ) from e
            stop_snr_db = lo if lo == hi else None
    receiver = _receiver(
        den,
        matching=matching,
        steps=int(steps),
        fading=fading,
        fading_grid=fading_grid,
        fading_samples=int(fading_samples),
        stop_snr_db=stop_snr_db,
        # at or above the stop SNR the stopped receiver returns the LMMSE latent: skip to it
        # (the same output, without matching every image first)
        skip_snr_db=TUNED_SKIP_SNR_DB if tuned is not None and dm_stop == "auto" else stop_snr_db,
    )
    estimator = None
    if snr_source == "learned":
        from ..estimation.learned import load_snr_estimator
        from .checkpoint import find_latent_model

        est_path = (
            _latent_model_file(estimator_path, "SNR estimator")
            if estimator_path
            else find_latent_model("snr-estimator", base, cbr_key, fingerprint=fingerprint).weights
        )
        estimator = load_snr_estimator(
            est_path, codec=base, latent_channels=codec.latent_shape(8, 8)[0], device=device
        )
        check_codec_weights(est_path, "SNR estimator", fingerprint)
    if tuned is not None:  # denoiser and estimator checked against the base codec: same encoder
        codec = tuned
    return AnalogLink(
        codec,
        receiver,
        name=f"{base}+dm",
        fixed_cbr=base == "vae",
        snr_source=snr_source,
        estimator=estimator,
    )


def tuned_decoder(
    codec: DeepJSCC,
    base: str,
    denoiser_path: str,
    device: torch.device | str,
    ref: str | None = None,
) -> DeepJSCC | None:
    """The codec whose decoder was trained behind the receiver with the denoiser at
    ``denoiser_path``, with ``codec``'s encoder: ``ref`` (a zoo name, run folder or
    ``.safetensors`` with its card), else the zoo's (a user zoo's only behind a denoiser of
    one's own; None when there is none). ValueError when
    ``ref`` is no such decoder, was trained behind another denoiser or another encoder."""
    from ..channels import format_cbr
    from ..codecs.jscc import load_jscc
    from ..zoo import find_dm_decoder, read_card, resolve_weights, sha256_file, zoo_ref

    sha = sha256_file(denoiser_path)
    weights: str | Path
    if ref is None:  # behind a shipped denoiser, a shipped decoder only (the label is the same)
        shipped = zoo_ref(denoiser_path) != str(denoiser_path)
        entry = find_dm_decoder(base, codec.cbr, sha, users=not shipped)
        if entry is None:
            return None
        weights, name = entry.weights, f"zoo decoder {entry.name!r}"
    else:
        try:
            _, card = read_card(ref)
        except (OSError, ValueError) as e:
            raise ValueError(f"--dm-decoder {ref!r}: {e}") from e
        behind = card.get("decoder_behind_dm") or {}
        if not behind:
            raise ValueError(
                f"--dm-decoder {ref!r} is not a decoder trained behind a diffusion receiver "
                "('semcom train jscc --behind-dm'; its card says so)"
            )
        if behind.get("denoiser_sha256") != sha:
            raise ValueError(
                f"--dm-decoder {ref!r} was trained behind the denoiser "
                f"{behind.get('denoiser', '?')!r}, not the one this receiver runs "
                f"({str(denoiser_path)!r}): pass that one with --denoiser"
            )
        weights, name = resolve_weights(ref), f"--dm-decoder {ref!r}"
    tuned = load_jscc(weights, model=base, c=codec.c, width=codec.width, device=device)
    ours, theirs = codec.state_dict(), tuned.state_dict()
    if any(not torch.equal(ours[k], theirs[k]) for k in ours if k.startswith("enc")):
        raise ValueError(
            f"{name} was trained behind another encoder than the {base} codec in use at CBR "
            f"{format_cbr(codec.cbr)}; retrain it with 'semcom train jscc --behind-dm'"
        )
    return tuned


def _latent_model_file(ref: str, what: str) -> str:
    """A denoiser or SNR estimator given by the user: a zoo name (``semcom zoo list``, user zoo
    included), a run folder or a ``.safetensors``; ValueError naming it when there is none,
    before anything reads or hashes it."""
    from ..paths import checkpoint_file
    from ..zoo import resolve_weights

    try:
        path = resolve_weights(ref)
    except ValueError:  # neither a name nor a file: said below, naming what was looked for
        path = str(ref)
    weights = checkpoint_file(path)
    if not weights.is_file():
        raise ValueError(
            f"{what} checkpoint {str(weights)!r} not found (give a zoo name, a run folder or a "
            ".safetensors)"
        )
    return path


def denoiser_file(
    codec: Codec, base: str, denoiser_path: str | None, fingerprint: str | None = None
) -> str:
    """``denoiser_path`` (a zoo name, run folder or ``.safetensors``), or the weights of the
    zoo's denoiser for ``codec`` (named ``base``; ``fingerprint``: its
    :func:`~semcom.fingerprint.codec_fingerprint` when already computed)."""
    from .checkpoint import find_denoiser, latent_cbr_key

    if denoiser_path:
        return _latent_model_file(denoiser_path, "denoiser")
    cbr_key = latent_cbr_key(base, getattr(codec, "cbr", None))
    fingerprint = fingerprint or codec_fingerprint(codec)
    return str(find_denoiser(base, cbr_key, fingerprint=fingerprint).weights)


def dm_receiver(
    codec: Codec,
    base: str,
    denoiser_path: str | None,
    device: torch.device | str,
    **options,
) -> DiffusionReceiver:
    """The :class:`~semcom.diffusion.receiver.DiffusionReceiver` for ``codec`` (named
    ``base``: ``vae``, ``deepjscc``, ``adjscc``) around the given denoiser checkpoint (None: the
    shipped one for its CBR), refusing a denoiser trained on other latents or other weights.
    ``options``: ``matching`` (the rule), ``steps``, ``fading``, ``fading_grid``,
    ``fading_samples``, ``stop_snr_db``, ``skip_snr_db``."""
    fingerprint = codec_fingerprint(codec)
    path = denoiser_file(codec, base, denoiser_path, fingerprint=fingerprint)
    return _receiver(_load_denoiser_for(codec, base, path, device, fingerprint), **options)


def _load_denoiser_for(
    codec: Codec, base: str, path: str, device: torch.device | str, fingerprint: str
) -> LatentUNet:
    """The denoiser at ``path`` for ``codec`` (named ``base``, weights ``fingerprint``), with
    every check of :func:`~semcom.diffusion.checkpoint.load_denoiser` (codec, CBR, latent
    channels, weights): a ``LatentUNet`` on ``device``."""
    from .checkpoint import latent_cbr_key, load_denoiser

    channels = codec.latent_shape(96, 96)[0]
    cbr_key = latent_cbr_key(base, getattr(codec, "cbr", None))
    return load_denoiser(
        path, codec=base, cbr=cbr_key, latent_channels=channels, device=device,
        codec_weights=fingerprint,
    )  # fmt: skip


def _receiver(den: LatentUNet, **options) -> DiffusionReceiver:
    """:class:`~semcom.diffusion.receiver.DiffusionReceiver` ``"dm"`` around the loaded
    denoiser ``den`` (its ``p0``), the options of :func:`dm_receiver`."""
    from .receiver import DiffusionReceiver

    options["rule"] = options.pop("matching", "continuous")
    return DiffusionReceiver(den, p0=den.p0, name="dm", **options)


def _factory(base: str):
    def factory(cbr: float | None, device: torch.device, **options) -> AnalogLink:
        return build_dm_link(base, cbr, device, **options)

    return factory


for _base in ("vae", "deepjscc", "adjscc"):
    register_scheme(
        SchemeSpec(
            name=f"{_base}+dm",
            description=SCHEMES[f"{_base}+dm"],
            factory=_factory(_base),
            cbrs=(VAE_CBR,) if _base == "vae" else None,
            shown_cbrs=None if _base == "vae" else listed_cbrs(_base, denoiser=True),
            requires=f"a shipped denoiser for {_base} latents (see 'semcom zoo list')",
            options=(
                "matching",
                "steps",
                "fading",
                "fading_grid",
                "fading_samples",
                "dm_stop",
                "dm_decoder",
                "denoiser_path",
                "snr_source",
                "estimator_path",
            )
            + (() if _base == "vae" else ("codec_path",)),
        )
    )
