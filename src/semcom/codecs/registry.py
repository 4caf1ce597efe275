"""Registers the codec-based schemes (importing this module fills the scheme registry)."""

from __future__ import annotations

import torch

from ..channels import format_cbr
from ..link import AnalogLink
from ..names import JSCC_MODELS, SCHEMES, VAE_CBR
from ..schemes import SchemeSpec, register_scheme
from ..zoo.catalog import listed_cbrs


def check_vae_cbr(scheme: str, cbr: float | None) -> None:
    """The TAEF2 schemes (``vae``, ``vae+dm``) send its whole latent: CBR 1/12 or none given."""
    if cbr is not None and abs(cbr - VAE_CBR) > 1e-3:
        raise ValueError(f"scheme {scheme!r} has a fixed CBR of 1/12 (got {format_cbr(cbr)})")


def _vae(cbr: float | None, device: torch.device) -> AnalogLink:
    from .taef2 import load_taef2

    check_vae_cbr("vae", cbr)
    return AnalogLink(load_taef2(device))


register_scheme(
    SchemeSpec(
        name="vae",
        description=SCHEMES["vae"],
        factory=_vae,
        cbrs=(VAE_CBR,),
        requires="taef2/taef2_{encoder,decoder}.pth under SEMCOM_WEIGHTS",
    )
)


def behind_dm_refusal(model: str, ref: str) -> str:
    """Why ``--codec ref``, a decoder trained behind the diffusion receiver, is refused as the
    codec of scheme ``model`` / ``model+dm``, and the command line that runs it."""
    how = ""
    try:
        from ..zoo import read_card

        behind = read_card(ref)[1].get("decoder_behind_dm") or {}
        if behind.get("init"):
            how += f" --codec {behind['init']}"
        if behind.get("denoiser"):
            how += f" --denoiser {behind['denoiser']}"
    except (OSError, ValueError):  # no card: the flags it needs are not known
        pass
    why = (
        "--codec names the codec whose encoder it was trained behind"
        if model.endswith("+dm")
        else "it would decode without the denoised latent it reads"
    )
    return (
        f"--codec {ref!r} is a decoder trained behind the diffusion receiver ('semcom train "
        f"jscc --behind-dm'), not a codec of scheme {model!r} ({why}): run it with "
        f"'--scheme {model.removesuffix('+dm')}+dm{how} --dm-decoder {ref}'"
    )


def _jscc_factory(model: str):
    def factory(
        cbr: float | None, device: torch.device, codec_path: str | None = None
    ) -> AnalogLink:
        from ..zoo import load_codec

        codec = load_codec(model, cbr, device, ref=codec_path)
        if getattr(codec, "dm_side", False):
            # its decoder reads the denoised latent too: without the receiver it was trained
            # behind, the LMMSE estimate would stand in for it unnoticed
            raise ValueError(behind_dm_refusal(model, str(codec_path)))
        return AnalogLink(codec, name=model, fixed_cbr=False)

    return factory


for _model in JSCC_MODELS:
    register_scheme(
        SchemeSpec(
            name=_model,
            description=SCHEMES[_model],
            factory=_jscc_factory(_model),
            cbrs=listed_cbrs(_model),
            requires=f"a shipped {_model} checkpoint (see 'semcom zoo list')",
            options=("codec_path",),
        )
    )
