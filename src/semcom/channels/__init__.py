"""Channels: real<->complex packing, power normalisation, AWGN/Rayleigh on Sionna,
CSI (perfect or pilot LS estimate), MMSE equalise + normalise, CBR accounting."""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from ..names import CHANNELS, CSI_MODES

if TYPE_CHECKING:
    from .cbr import (
        SCALAR_SIDE_SYMBOLS,
        CBRReport,
        cbr_report,
        format_cbr,
        parse_cbr,
        symbols_for_reals,
    )
    from .equalize import DECODER_SNR_RANGE_DB, DEEP_FADE, Equalized, decoder_snr_db, equalize
    from .mapping import (
        PackedLatent,
        complex_to_real,
        normalize_power,
        pack,
        real_to_complex,
        symbols_to_unit_real,
        unpack,
        unpad_like,
    )
    from .models import Channel, ChannelState, as_snr_tensor, snr_to_no

__all__ = [
    "CHANNELS",
    "CSI_MODES",
    "DECODER_SNR_RANGE_DB",
    "DEEP_FADE",
    "SCALAR_SIDE_SYMBOLS",
    "CBRReport",
    "Channel",
    "ChannelState",
    "Equalized",
    "PackedLatent",
    "as_snr_tensor",
    "cbr_report",
    "complex_to_real",
    "decoder_snr_db",
    "equalize",
    "format_cbr",
    "normalize_power",
    "pack",
    "parse_cbr",
    "real_to_complex",
    "snr_to_no",
    "symbols_for_reals",
    "symbols_to_unit_real",
    "unpack",
    "unpad_like",
]

# imported on first use: equalize, mapping and models import torch, cbr does not
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "cbr": (
            "SCALAR_SIDE_SYMBOLS",
            "CBRReport",
            "cbr_report",
            "format_cbr",
            "parse_cbr",
            "symbols_for_reals",
        ),
        "equalize": (
            "DECODER_SNR_RANGE_DB",
            "DEEP_FADE",
            "Equalized",
            "decoder_snr_db",
            "equalize",
        ),
        "mapping": (
            "PackedLatent",
            "complex_to_real",
            "normalize_power",
            "pack",
            "real_to_complex",
            "symbols_to_unit_real",
            "unpack",
            "unpad_like",
        ),
        "models": ("Channel", "ChannelState", "as_snr_tensor", "snr_to_no"),
    },
)
