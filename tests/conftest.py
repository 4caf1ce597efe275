"""Shared fixtures: data and weights roots come from SEMCOM_DATA / SEMCOM_WEIGHTS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run (CI stays reproducible: a red run is a
# bug, not a lucky draw); `HYPOTHESIS_PROFILE=explore pytest ...` draws new ones on each run.
settings.register_profile("semcom", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "semcom"))


def _root(var: str) -> Path:
    value = os.environ.get(var)
    if not value or not Path(value).is_dir():
        pytest.skip(f"{var} is not set to a folder (CI sets it to ../shared/...)")
    return Path(value)


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _root("SEMCOM_DATA")


@pytest.fixture(scope="session")
def weights_root() -> Path:
    return _root("SEMCOM_WEIGHTS")


@pytest.fixture(scope="session", autouse=True)
def _schemes_from_the_shipped_zoo():
    """Register the built-in schemes once, from the shipped zoo, before any test points the zoo
    elsewhere: a test that swaps ``ZOO_DIR`` for a temporary zoo must not fix the CBRs of the
    schemes for the rest of the session (tests then depended on their order)."""
    from semcom.schemes import list_schemes

    list_schemes()


@pytest.fixture(autouse=True)
def _few_threads():
    # One thread: on 2-core CI machines 2 torch threads make small ops ~10-100x slower.
    torch.set_num_threads(1)
    yield


@pytest.fixture
def identity_codec():
    """A codec whose latent is the image itself, for link tests; ``identity_codec()`` or
    ``identity_codec(snr_adaptive=True)``. Each instance records in ``told`` the SNR tensors
    its decoder was given."""
    from semcom.codecs.base import Codec

    class IdentityCodec(Codec):
        name = "identity"

        def __init__(self, snr_adaptive: bool = False) -> None:
            super().__init__()
            self.snr_adaptive = snr_adaptive
            self.told: list = []

        def _encode(self, x, snr_db):
            return x

        def _decode(self, latent, snr_db):
            if snr_db is not None:
                self.told.append(snr_db.clone())
            return latent

        def latent_shape(self, h, w):
            return (3, h, w)

    return IdentityCodec
