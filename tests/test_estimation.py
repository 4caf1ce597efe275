"""SNR estimation: the moment estimator (math.md §4) and its use in the link."""

from __future__ import annotations

import math

import pytest
import torch

from semcom.channels import Channel, pack
from semcom.estimation import level_from_gamma, moment_snr


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0])
def test_moment_estimator_awgn_accurate(snr_db: float) -> None:
    # 1e5 symbols per image: the estimate is within 0.2 dB (math.md: error <= 0.2 dB).
    z = pack(torch.randn(4, 200_000, generator=_gen(1))).z
    y, state = Channel("awgn")(z, snr_db, _gen(2))
    est = 10 * torch.log10(moment_snr(y, state.no))
    assert torch.all((est - snr_db).abs() < 0.2), est


def test_moment_estimator_slow_fading_tracks_gain() -> None:
    z = pack(torch.randn(6, 100_000, generator=_gen(3))).z
    y, state = Channel("rayleigh-slow")(z, 10.0, _gen(4))
    true = state.h.abs().pow(2)[:, 0].double() / state.no.double()
    est = moment_snr(y, state.no)
    rel = (est - true).abs() / true
    assert torch.all(rel < 0.1), (est, true)


def test_moment_estimator_clamps_and_never_nan() -> None:
    z = pack(torch.randn(2, 1000, generator=_gen(5))).z
    y, state = Channel("awgn")(z, -40.0, _gen(6))
    g = moment_snr(y, state.no)
    assert torch.all(g >= 0) and torch.all(torch.isfinite(g))
    d = level_from_gamma(g)
    assert torch.all((d > 0) & (d <= 1))
    # N0 = 0 (SNR = +inf): infinite SNR, level 0
    y0, s0 = Channel("awgn")(z, math.inf, _gen(7))
    assert torch.all(torch.isinf(moment_snr(y0, s0.no)))
    assert torch.all(level_from_gamma(moment_snr(y0, s0.no)) == 0)


def test_moment_estimator_rejects_real_input() -> None:
    with pytest.raises(ValueError, match="complex"):
        moment_snr(torch.ones(2, 3), torch.ones(2))


def test_link_with_moment_snr_close_to_known() -> None:
    from semcom.codecs.base import Codec
    from semcom.link import AnalogLink

    class Identity(Codec):
        name = "identity"

        def _encode(self, x, snr_db):
            return x

        def _decode(self, latent, snr_db):
            return latent

        def latent_shape(self, h, w):
            return (3, h, w)

    x = torch.rand(2, 3, 64, 64, generator=_gen(8))
    known = AnalogLink(Identity()).transmit(x, Channel("awgn"), 5.0, _gen(9)).images
    moment = AnalogLink(Identity(), snr_source="moment")
    est = moment.transmit(x, Channel("awgn"), 5.0, _gen(9)).images
    # same noise; only d differs slightly (estimate from 6144 symbols)
    assert (known - est).abs().max() < 0.02
    assert not torch.equal(known, est)
    with pytest.raises(ValueError, match="snr_source"):
        AnalogLink(Identity(), snr_source="oracle")
