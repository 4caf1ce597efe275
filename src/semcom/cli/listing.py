"""``semcom schemes`` and ``semcom datasets``: what can be asked for."""

from __future__ import annotations

import argparse

from ..channels import format_cbr


def cmd_schemes(args: argparse.Namespace) -> int:
    """``semcom schemes``: print each scheme, its CBRs and what it is; returns 0."""
    from ..eval.text import aligned
    from ..schemes import list_schemes

    rows = []
    for spec in list_schemes():
        shown = spec.cbrs or spec.shown_cbrs
        cbrs = ", ".join(format_cbr(c) for c in shown) if shown else "any"
        rows.append([spec.name, cbrs, spec.description])
    print(aligned([["scheme", "CBR", "what"], *rows]))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    """``semcom datasets``: print each named data set and what it is; returns 0."""
    from ..names import list_datasets

    for name, desc in list_datasets().items():
        print(f"{name:16s} {desc}")
    return 0
