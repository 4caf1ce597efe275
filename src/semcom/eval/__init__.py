"""SNR sweeps to results JSON (docs/results-format.md) and labelled comparison grids."""

from .grid import Tile, make_grid
from .sweep import (
    DEFAULT_METRICS,
    PartialResults,
    RunKey,
    evaluate,
    image_seed,
    results_document,
    safe_metrics,
    summarize,
)

__all__ = [
    "DEFAULT_METRICS",
    "PartialResults",
    "RunKey",
    "Tile",
    "evaluate",
    "image_seed",
    "make_grid",
    "results_document",
    "safe_metrics",
    "summarize",
]
