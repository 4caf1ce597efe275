"""``semcom schemes`` and ``semcom datasets``: what can be asked for."""

from __future__ import annotations

import argparse
import sys

from ..channels import format_cbr


def cmd_schemes(args: argparse.Namespace) -> int:
    """``semcom schemes``: print each scheme, its CBRs and what it is; returns 0. Without
    plugins and schemes registered in this process, the built-in ones come from
    :data:`semcom.names.SCHEMES` and the zoo, without importing torch."""
    from ..eval.text import aligned

    rows = registry_rows() if _registry_needed() else builtin_rows()
    print(aligned([["scheme", "CBR", "what"], *rows]))
    return 0


def _row(name: str, cbrs: tuple[float, ...] | None, description: str) -> list[str]:
    shown = ", ".join(format_cbr(c) for c in cbrs) if cbrs else "any"
    return [name, shown, description]


def _registry_needed() -> bool:
    """Whether the scheme registry may hold schemes other than the built-ins: it is loaded
    (``register_scheme`` in this process) or an installed package has a plugin for it."""
    if "semcom.schemes" in sys.modules:
        return True
    from importlib.metadata import entry_points

    from ..names import PLUGIN_GROUP

    return bool(entry_points(group=PLUGIN_GROUP))


def registry_rows() -> list[list[str]]:
    """``[name, CBRs, description]`` of every registered scheme (:func:`list_schemes`, which
    imports torch), sorted by name."""
    from ..schemes import list_schemes

    return [_row(s.name, s.cbrs or s.shown_cbrs, s.description) for s in list_schemes()]


def builtin_rows() -> list[list[str]]:
    """The rows of :func:`registry_rows` for the built-in schemes alone, without importing
    torch: names and descriptions from :data:`semcom.names.SCHEMES`, CBRs as the registries
    find them (the TAEF2 schemes' fixed CBR, the zoo's checkpoints and denoisers)."""
    from ..names import JSCC_MODELS, SCHEMES, VAE_CBR, available_formats
    from ..zoo.catalog import listed_cbrs

    formats = available_formats()
    rows = []
    for name, description in sorted(SCHEMES.items()):
        base = name.removesuffix("+dm")
        if "+" in base and base.split("+")[0] not in formats:
            continue  # a separation baseline of an image format this Pillow lacks
        jscc = base in JSCC_MODELS  # else a separation baseline: any CBR
        cbrs = (VAE_CBR,) if base == "vae" else listed_cbrs(base, name != base) if jscc else None
        rows.append(_row(name, cbrs, description))
    return rows


def cmd_datasets(args: argparse.Namespace) -> int:
    """``semcom datasets``: print each named data set and what it is; returns 0."""
    from ..names import list_datasets

    for name, desc in list_datasets().items():
        print(f"{name:16s} {desc}")
    return 0
