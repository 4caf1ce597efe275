"""semcom: generative semantic communication in PyTorch.

Data flows like the physical link: transmitter (codec encoder, power normalisation)
-> channel (AWGN / Rayleigh, on Sionna) -> receiver (equalise, estimate SNR, step-match,
diffusion denoise, decode). See "Conventions" in the README for the conventions every module
follows, and "Python API" there for a first session in a notebook.

The subpackages load on first use (``semcom.channels``, ``semcom.schemes``, ...), so
``import semcom`` stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: subpackages and modules reachable as attributes of the package: every one that declares
#: its API in an ``__all__`` (tests/test_api_docs.py walks them)
SUBMODULES = (
    "channels",
    "cli",
    "codecs",
    "data",
    "devices",
    "diffusion",
    "estimation",
    "eval",
    "fingerprint",
    "link",
    "metrics",
    "names",
    "schemes",
    "separation",
    "train",
    "zoo",
)


def __getattr__(name: str):
    if name in SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'semcom' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *SUBMODULES})  # an imported submodule is in both
