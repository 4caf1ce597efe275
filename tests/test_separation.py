"""Separation baselines: codec budget fit, ideal capacity, 5G LDPC + QAM chain, registry."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semcom.channels import Channel, ChannelState
from semcom.data import SampleImages
from semcom.schemes import get_scheme
from semcom.separation import MCS_TABLE, CapacityScheme, LDPCScheme, get_mcs
from semcom.separation.capacity import capacity_bits, sample_fading
from semcom.separation.ldpc import LDPCChain, bits_to_bytes, bytes_to_bits, layout
from semcom.separation.source import (
    FORMATS,
    BudgetEncoder,
    available_formats,
    decode_tensor,
    encode_to_budget,
    to_uint8_hwc,
)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    """skimage's astronaut, area-resized to 128 x 128: [1, 3, 128, 128] in [0, 1]."""
    x = SampleImages(names=("astronaut",))[0]
    return F.interpolate(x[None], size=(128, 128), mode="area").clamp(0, 1)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) on the 8-bit quantised output."""
    mse = ((a * 255).round() / 255 - b).pow(2).flatten(1).mean(1)
    return -10 * torch.log10(mse)


# ------------------------------------------------------------------ source coding
@pytest.mark.parametrize("fmt", available_formats())
def test_budget_fit_is_largest_fitting_quality(astronaut, fmt):
    img = to_uint8_hwc(astronaut[0])
    enc = BudgetEncoder(img, fmt)
    q_max = FORMATS[fmt].q_max
    for budget in (6_000, 12_000, 25_000, 60_000, math.inf):
        res = enc.fit(budget)
        assert res is not None
        data, q = res
        assert 8 * len(data) <= budget
        assert data == enc.file(q)
        if q < q_max:
            assert enc.bits(q + 1) > budget  # the next quality does not fit
    # The free function agrees, and too small a budget gives None.
    assert encode_to_budget(img, fmt, 25_000)[1] == enc.fit(25_000)[1]
    assert enc.fit(enc.bits(FORMATS[fmt].q_min) - 1) is None
    out = decode_tensor(enc.fit(math.inf)[0])
    assert out.shape == (3, 128, 128) and 0 <= out.min() and out.max() <= 1


# ------------------------------------------------------------------ capacity
def test_capacity_psnr_increases_with_snr(astronaut):
    s = CapacityScheme("jpeg", cbr=1 / 16)
    snr = torch.tensor([5.0, 10.0, 20.0, 30.0])
    x = astronaut.expand(4, -1, -1, -1)
    tx = s.transmit(x, Channel("awgn"), snr, torch.Generator().manual_seed(0))
    p = _psnr(tx.images, x)
    assert torch.all(p[1:] > p[:-1]), p
    assert tx.info["fallbacks"] == 0
    n = tx.cbr.data_symbols
    for i, b in enumerate(tx.info["budget_bits"]):
        assert b == math.floor(n * math.log2(1 + 10 ** (snr[i].item() / 10)))
        assert tx.info["file_bits"][i] <= b


def test_capacity_fallback_at_very_low_snr(astronaut):
    s = CapacityScheme("webp", cbr=1 / 16)
    tx = s.transmit(astronaut, Channel("awgn"), -10.0, torch.Generator().manual_seed(0))
    assert tx.info["fallbacks"] == 1 and tx.info["quality"] == [None]
    assert torch.all(tx.images == 0.5)  # default: mid-grey
    mean = torch.rand(3, 8, 8)
    s.fallback_image = mean  # e.g. the data set's mean image, resized to the image
    tx = s.transmit(astronaut, Channel("awgn"), -10.0, torch.Generator().manual_seed(0))
    ref = F.interpolate(mean[None], size=(128, 128), mode="bilinear", align_corners=False)
    torch.testing.assert_close(tx.images, ref)


def test_capacity_fading_matches_the_analog_draw(astronaut):
    """Capacity uses the image's realised fades, drawn as an analog scheme draws them."""
    ch = Channel("rayleigh-fast")
    s = CapacityScheme("jpeg", cbr=1 / 16)
    x = astronaut.expand(2, -1, -1, -1)
    snr = torch.tensor([10.0, 20.0])
    g1 = torch.Generator().manual_seed(3)
    tx = s.transmit(x, ch, snr, g1)
    n = tx.cbr.data_symbols
    g2 = torch.Generator().manual_seed(3)
    _, state = ch(torch.zeros(2, n, dtype=torch.complex64), snr, g2)  # an analog transmission
    assert torch.equal(g1.get_state(), g2.get_state())  # same generator position afterwards
    g = state.h.abs().double().pow(2)
    expect = torch.log2(1 + g * 10 ** (snr.double()[:, None] / 10)).sum(1).floor()
    assert tx.info["budget_bits"] == expect.tolist()
    # Fast fading loses capacity against AWGN at the same mean SNR (Jensen).
    assert all(
        b < n * math.log2(1 + 10 ** (v / 10))
        for b, v in zip(expect.tolist(), snr.tolist(), strict=True)
    )


# ------------------------------------------------------------------ LDPC chain
def test_mcs_table_and_constellations():
    assert len(MCS_TABLE) == 20
    assert get_mcs("16QAM-3/4").efficiency == 3.0
    with pytest.raises(ValueError):
        get_mcs("256qam-1/2")
    chain = LDPCChain(torch.device("cpu"))
    for bps in (1, 2, 4, 6):
        mapper, _ = chain.modem(bps)
        pts = mapper.constellation()
        assert abs(pts.abs().pow(2).mean().item() - 1.0) < 1e-5  # E|z|^2 = 1
    data = os.urandom(100)
    assert bits_to_bytes(bytes_to_bits(data, 2000)) == data


@pytest.mark.parametrize("name", ["bpsk-1/3", "16qam-3/4", "64qam-5/6"])
def test_ldpc_chain_is_bit_exact_at_high_snr(name):
    m = get_mcs(name)
    lay = layout(3000, m, block_length=2048)
    data = os.urandom(lay.file_bits // 8)
    one = torch.ones(1, 1, dtype=torch.complex64)
    state = ChannelState(h=one, no=torch.tensor([1e-3]), h_hat=one)  # 30 dB
    r = LDPCChain(torch.device("cpu")).send(
        data, m, lay, Channel("awgn"), state, torch.Generator().manual_seed(0)
    )
    assert r.ok and r.block_errors == 0 and r.codewords == lay.codewords
    assert r.decoded == data


def test_ldpc_scheme_decodes_the_exact_file_at_30db(astronaut):
    s = LDPCScheme("jpeg", mcs="64qam-2/3", cbr=1 / 16)
    tx = s.transmit(astronaut, Channel("awgn"), 30.0, torch.Generator().manual_seed(0))
    assert tx.info["fallbacks"] == 0 and tx.info["block_errors"] == 0
    lay = layout(tx.cbr.data_symbols, get_mcs("64qam-2/3"))
    data, q = encode_to_budget(to_uint8_hwc(astronaut[0]), "jpeg", lay.file_bits)
    assert tx.info["quality"] == [q] and tx.info["file_bits"] == [8 * len(data)]
    assert torch.equal(tx.images[0], decode_tensor(data))  # bit-exact file -> same pixels


def test_ldpc_cliff_everything_falls_back_at_minus_10db(astronaut):
    s = LDPCScheme("jpeg", mcs="64qam-5/6", cbr=1 / 16)
    x = astronaut.expand(2, -1, -1, -1)
    tx = s.transmit(x, Channel("awgn"), -10.0, torch.Generator().manual_seed(0))
    assert tx.info["fallbacks"] == 2 and tx.info["block_errors"] >= 2
    assert torch.all(tx.images == 0.5)


def test_fixed_mcs_has_a_cliff(astronaut):
    # 16QAM rate 1/2 (2 bits per use): capacity log2(1+SNR) = 1.4 at 2 dB, 3.2 at 9 dB.
    s = LDPCScheme("jpeg", mcs="16qam-1/2", cbr=1 / 8)
    x = astronaut.expand(4, -1, -1, -1)
    snr = torch.tensor([2.0, 2.0, 9.0, 9.0])
    tx = s.transmit(x, Channel("awgn"), snr, torch.Generator().manual_seed(1))
    assert tx.info["mcs"] == [None, None, "16qam-1/2", "16qam-1/2"]
    p = _psnr(tx.images, x)
    assert p[2] == p[3] and p[2] > p[0] + 8  # all or nothing


def test_envelope_is_at_least_every_fixed_mcs(astronaut):
    ch = Channel("rayleigh-slow")
    x = astronaut.expand(2, -1, -1, -1)
    snr = torch.tensor([12.0, 20.0])
    env = LDPCScheme("jpeg", cbr=1 / 16).transmit(x, ch, snr, torch.Generator().manual_seed(5))
    p_env = _psnr(env.images, x)
    for name in ("16qam-1/2", "64qam-2/3"):
        fixed = LDPCScheme("jpeg", mcs=name, cbr=1 / 16)
        tx = fixed.transmit(x, ch, snr, torch.Generator().manual_seed(5))
        assert torch.all(p_env >= _psnr(tx.images, x) - 1e-9)


def test_ldpc_is_deterministic_with_the_same_generator(astronaut):
    s = LDPCScheme("jpeg", mcs="16qam-1/2", cbr=1 / 8)
    ch = Channel("rayleigh-fast", "estimated", coherence=64)
    x = astronaut.expand(3, -1, -1, -1)
    snr = torch.tensor([6.0, 8.0, 10.0])
    a = s.transmit(x, ch, snr, torch.Generator().manual_seed(7))
    b = s.transmit(x, ch, snr, torch.Generator().manual_seed(7))
    assert torch.equal(a.images, b.images)
    assert a.info == b.info


# ------------------------------------------------------------------ budget, registry
@pytest.mark.parametrize(
    "channel",
    [Channel("awgn"), Channel("rayleigh-slow", "estimated"), Channel("rayleigh-fast", "estimated")],
)
@pytest.mark.parametrize("hw", [(128, 128), (512, 768), (33, 47)])
@pytest.mark.parametrize("cbr", [1 / 16, 1 / 12, 0.037])
def test_cbr_report_is_the_requested_cbr(channel, hw, cbr):
    for scheme in (CapacityScheme("jpeg", cbr=cbr), LDPCScheme("jpeg", mcs="qpsk-1/2", cbr=cbr)):
        rep = scheme.cbr(*hw, channel)
        target = cbr * 3 * hw[0] * hw[1]
        assert abs(rep.channel_uses - target) <= 1.5  # round() plus pilot granularity
        assert rep.pilot_symbols == channel.pilot_symbols(rep.data_symbols)
        assert rep.source_values == 3 * hw[0] * hw[1]


def test_a_budget_below_the_pilots_sends_nothing():
    """8x8 at CBR 1/16 is 12 channel uses, fewer than the 16 pilots of estimated CSI: nothing is
    sent (the receiver shows the fallback) and nothing is charged, never more than the budget."""
    ch = Channel("rayleigh-slow", "estimated")
    assert ch.pilot_symbols(1) == 16 and ch.pilot_symbols(0) == 0
    for scheme in (
        CapacityScheme("jpeg", cbr=1 / 16),
        LDPCScheme("jpeg", mcs="qpsk-1/2", cbr=1 / 16),
    ):
        rep = scheme.cbr(8, 8, ch)
        assert (rep.data_symbols, rep.pilot_symbols, rep.channel_uses) == (0, 0, 0)


def test_registry_names_and_cbr():
    s = get_scheme("jpeg+ldpc")
    assert isinstance(s, LDPCScheme) and s.envelope and s.cbr_value == 1 / 16
    s = get_scheme("jpeg+ldpc:16qam-3/4", cbr=1 / 12)
    assert s.mcs == get_mcs("16qam-3/4") and s.cbr_value == 1 / 12
    assert s.name == "jpeg+ldpc:16qam-3/4" and not s.fixed_cbr
    s = get_scheme("webp+capacity", cbr=0.1)
    assert isinstance(s, CapacityScheme) and s.cbr_value == 0.1


def test_sample_fading_awgn_capacity_is_infinite_without_noise():
    st = sample_fading(
        Channel("awgn"), 1, 10, torch.tensor([math.inf]), torch.Generator(), torch.device("cpu")
    )
    assert capacity_bits(st, 10).item() == math.inf
    img = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    assert encode_to_budget(img, "jpeg", math.inf)[1] == FORMATS["jpeg"].q_max


@pytest.mark.parametrize("name", ["jpeg+capacity", "jpeg+ldpc:qpsk-1/2"])
def test_separation_returns_plain_float32_images(name):
    """As the analog schemes: float32 whatever the input's dtype, and an ordinary tensor (an
    inference-mode one refused in-place updates outside inference mode)."""
    from semcom.channels import Channel
    from semcom.schemes import get_scheme

    x = torch.rand(1, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    tx = get_scheme(name, "1/6").transmit(x, Channel(), 20.0, torch.Generator().manual_seed(0))
    assert tx.images.dtype == torch.float32 and not tx.images.is_inference()
    tx.images.mul_(1.0)  # raised before


@pytest.mark.parametrize("name", ["deepjscc", "jpeg+capacity", "jpeg+ldpc:qpsk-1/2"])
def test_transmit_names_a_wrong_channel_or_generator(name):
    """A channel's name or an int seed gave "'str' object is not callable" or a TypeError from
    deep inside torch; every scheme says what it expected."""
    from semcom.channels import Channel
    from semcom.schemes import get_scheme

    scheme, x = get_scheme(name, "1/16"), torch.rand(1, 3, 32, 32)
    with pytest.raises(TypeError, match=r"Channel\('awgn'\) for a name"):
        scheme.transmit(x, "awgn", 5.0, None)
    with pytest.raises(TypeError, match=r"torch\.Generator or None, got int"):
        scheme.transmit(x, Channel(), 5.0, 0)


def test_capacity_budget_is_floored(astronaut):
    """The budget is the whole bits of capacity: n log2(1 + SNR) = k + 0.75 gives k, not k + 1."""
    s = CapacityScheme("jpeg", cbr=1 / 16)
    n = s.cbr(*astronaut.shape[-2:], Channel("awgn")).data_symbols
    k = 20000
    snr_db = 10 * math.log10(2 ** ((k + 0.75) / n) - 1)
    tx = s.transmit(astronaut, Channel("awgn"), torch.tensor([snr_db]), torch.Generator())
    assert tx.info["budget_bits"] == [float(k)]
