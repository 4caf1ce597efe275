"""Registers the separation baselines (importing this module fills the scheme registry).

Names (every one accepts any CBR; ``--cbr`` missing -> 1/16):

* ``<fmt>+capacity`` -- codec at the largest quality fitting the channel capacity;
* ``<fmt>+ldpc`` -- codec + 5G LDPC + QAM, genie-aided best-MCS envelope over the 20 MCSs;
* ``<fmt>+ldpc:<mcs>`` -- the same at one fixed MCS, e.g. ``jpeg+ldpc:16qam-3/4``.

``<fmt>`` is ``jpeg``, ``webp`` and, when Pillow was built with it, ``avif``. The MCS is
separated by ``:`` rather than ``@`` because results label a scheme at a CBR as
``name@cbr`` (``jpeg+ldpc:qpsk-1/2@1/16``). Fixed-MCS entries are registered for
:data:`semcom.names.REGISTERED_MCS` only (to keep ``semcom schemes`` short); any other MCS is
one line of Python: ``LDPCScheme("jpeg", mcs="64qam-1/3", cbr=1/16)``. Their descriptions are
those of :data:`semcom.names.SCHEMES`.
"""

from __future__ import annotations

import torch

from ..names import REGISTERED_MCS, SCHEMES, available_formats
from ..schemes import SchemeSpec, register_scheme
from .capacity import CapacityScheme
from .ldpc import LDPCScheme, get_mcs


def _capacity(fmt: str):
    def factory(cbr: float | None, device: torch.device) -> CapacityScheme:
        return CapacityScheme(fmt, cbr=cbr)

    return factory


def _ldpc(fmt: str, mcs: str | None):
    def factory(cbr: float | None, device: torch.device) -> LDPCScheme:
        return LDPCScheme(fmt, mcs=mcs, cbr=cbr, device=device)

    return factory


def register_all() -> None:
    """(Re-)register every separation scheme available in this Pillow build."""
    for fmt in available_formats():
        register_scheme(
            SchemeSpec(
                name=f"{fmt}+capacity",
                description=SCHEMES[f"{fmt}+capacity"],
                factory=_capacity(fmt),
            )
        )
        register_scheme(
            SchemeSpec(
                name=f"{fmt}+ldpc",
                description=SCHEMES[f"{fmt}+ldpc"],
                factory=_ldpc(fmt, None),
            )
        )
        if fmt == "avif":
            continue
        for mcs in REGISTERED_MCS:
            m = get_mcs(mcs)
            register_scheme(
                SchemeSpec(
                    name=f"{fmt}+ldpc:{m.name}",
                    description=SCHEMES[f"{fmt}+ldpc:{m.name}"],
                    factory=_ldpc(fmt, m.name),
                )
            )


register_all()
