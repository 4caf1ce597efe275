"""SNR sweeps to results JSON (docs/results-format.md) and labelled comparison grids."""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
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

# imported on first use: the results commands read eval.table, eval.plot and eval.stats without
# torch, which grid and the sweep's evaluation import
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "grid": ("Tile", "make_grid"),
        "sweep": (
            "DEFAULT_METRICS",
            "PartialResults",
            "RunKey",
            "evaluate",
            "image_seed",
            "results_document",
            "safe_metrics",
            "summarize",
        ),
    },
)
