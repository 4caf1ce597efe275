"""Channel bandwidth ratio (CBR): complex channel uses per real source value.

``CBR = (data symbols + pilot symbols + side-information symbols) / (3 H W)`` for an RGB
image of ``H x W`` pixels (README "Conventions"). ``N`` real latent values cost ``ceil(N / 2)``
complex channel uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

#: Channel uses charged for one float side-information scalar (e.g. the latent RMS sent
#: with the ``vae`` codec): 16 bits (float16) at an idealised 1 bit per channel use, taken as
#: delivered error-free (like control information). Below 0 dB that is optimistic: capacity
#: needs ~41 / ~117 uses at -5 / -10 dB (0.1 % of a 768x512 image's budget at CBR 1/12).
SCALAR_SIDE_SYMBOLS = 16


@dataclass(frozen=True)
class CBRReport:
    """Channel-use budget of one image, in complex channel uses.

    Attributes:
        data_symbols: complex channel uses carrying the latent (``ceil(L / 2)`` for ``L``
            real values) or the coded file.
        pilot_symbols: complex channel uses spent on pilots (0 for perfect CSI).
        side_symbols: complex channel uses charged for side information (the latent RMS of
            a ``needs_scale`` codec: :data:`SCALAR_SIDE_SYMBOLS`).
        source_values: real source values, ``3 H W`` for an RGB image.
    """

    data_symbols: int
    pilot_symbols: int
    side_symbols: int
    source_values: int

    @property
    def channel_uses(self) -> int:
        """Complex channel uses per image: data + pilots + side information."""
        return self.data_symbols + self.pilot_symbols + self.side_symbols

    @property
    def cbr(self) -> float:
        """The CBR: :attr:`channel_uses` per real source value (``1/16`` is 0.0625)."""
        return self.channel_uses / self.source_values

    def pilot_note(self) -> str | None:
        """A sentence when the pilots take at least as many channel uses as the data (a
        ``--pilots`` count that dwarfs the latent: the measured CBR is then at least half pilots, or
        nothing is sent), else ``None``."""
        if not self.data_symbols:
            return (
                "no data is sent: the pilots need more channel uses than the budget holds "
                "(the receiver falls back to its default image)"
            )
        if self.pilot_symbols < self.data_symbols:
            return None
        return (
            f"the pilots take {self.pilot_symbols} of the {self.channel_uses} channel uses "
            f"(data {self.data_symbols}): the measured CBR {format_cbr(self.cbr)} is at least "
            "half pilots"
        )

    def __str__(self) -> str:
        parts = f"{self.data_symbols} data"
        if self.pilot_symbols:
            parts += f" + {self.pilot_symbols} pilot"
        if self.side_symbols:
            parts += f" + {self.side_symbols} side"
        return (
            f"CBR {format_cbr(self.cbr)} = {self.cbr:.5f} "
            f"({parts} channel uses / {self.source_values} source values)"
        )


def symbols_for_reals(n_real: int) -> int:
    """Complex channel uses for ``n_real`` real values: ``ceil(n_real / 2)``."""
    return math.ceil(n_real / 2)


def cbr_report(
    latent_shape: tuple[int, ...],
    image_hw: tuple[int, int],
    pilot_symbols: int = 0,
    side_symbols: int = 0,
    channels: int = 3,
) -> CBRReport:
    """CBR of sending a real latent of ``latent_shape`` (no batch dim) for an image of
    ``image_hw = (H, W)`` pixels with ``channels`` colour channels: ``ceil(L / 2)`` data
    symbols for the latent's ``L`` values, plus ``pilot_symbols`` and ``side_symbols``
    (complex channel uses per image), over ``channels * H * W`` real source values."""
    n_real = math.prod(latent_shape)
    return CBRReport(
        data_symbols=symbols_for_reals(n_real),
        pilot_symbols=pilot_symbols,
        side_symbols=side_symbols,
        source_values=channels * image_hw[0] * image_hw[1],
    )


def format_cbr(cbr: float, max_denominator: int = 1000) -> str:
    """Print a CBR as a fraction when it is exactly one with a denominator up to
    ``max_denominator`` (``0.0625 -> '1/16'``; float rounding aside), else as a decimal
    (``16400/196608 -> '0.08341'``, not the near miss ``'83/995'``)."""
    fr = Fraction(cbr).limit_denominator(max_denominator)
    if fr.numerator and abs(float(fr) - cbr) <= 1e-9 * cbr:
        return f"{fr.numerator}/{fr.denominator}"
    return f"{cbr:.4g}"


def parse_cbr(text: str | float) -> float:
    """Parse ``'1/16'``, ``'0.0625'`` or a float into a CBR in (0, 64] (complex channel uses
    per real source value); ``ValueError`` otherwise."""
    try:
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError) as e:
        raise ValueError(f"invalid CBR {text!r}: use a fraction like 1/16 or a decimal") from e
    if not 0 < value <= 64:
        raise ValueError(f"CBR must be positive and at most 64, got {text!r}")
    return value
