"""Separation baselines: codec budget fit, ideal capacity, 5G LDPC + QAM chain, registry."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import semcom.separation.source as source
from semcom.channels import Channel, ChannelState
from semcom.data import SampleImages
from semcom.schemes import get_scheme
from semcom.separation import MCS_TABLE, CapacityScheme, LDPCScheme, get_mcs
from semcom.separation.capacity import capacity_bits, sample_fading
from semcom.separation.ldpc import (
    BLOCK_LENGTH,
    HEADER_BITS,
    Layout,
    LDPCChain,
    bits_to_bytes,
    bytes_to_bits,
    layout,
)
from semcom.separation.source import (
    FORMATS,
    SCAN_AHEAD,
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
            assert enc.bits(q + 1) > budget  # the next quality does not fit (on this image)
    # The free function agrees, and too small a budget gives None.
    assert encode_to_budget(img, fmt, 25_000)[1] == enc.fit(25_000)[1]
    assert enc.fit(enc.bits(FORMATS[fmt].q_min) - 1) is None
    out = decode_tensor(enc.fit(math.inf)[0])
    assert out.shape == (3, 128, 128) and 0 <= out.min() and out.max() <= 1


def _size_table(monkeypatch: pytest.MonkeyPatch, fits: set[int] | range) -> list[int]:
    """Replace the codec by a size table: quality ``q`` gives a 10-byte file (80 bits) if
    ``q in fits``, else 1000 bytes. Returns the qualities encoded, in call order."""
    calls: list[int] = []

    def encode(img: np.ndarray, fmt: str, quality: int) -> bytes:
        calls.append(quality)
        return bytes(10 if quality in fits else 1000)

    monkeypatch.setattr(source, "encode", encode)
    return calls


@pytest.mark.parametrize(
    ("bumps", "expect"),
    [
        ((), 47),  # monotone sizes: the binary search's answer
        ((49,), 49),  # right behind the bump at 48
        ((49, 51), 51),  # the largest fitting quality of the scan, not the first
        ((51,), 51),  # the last quality scanned: 48 + SCAN_AHEAD
        ((52,), 47),  # beyond the scan: never tried
    ],
)
def test_budget_fit_scans_ahead_over_a_size_bump(monkeypatch, bumps, expect):
    """JPEG (qualities 1..95) with files that fit an 80-bit budget up to quality 47 and again at
    ``bumps``. By hand: 1 fits, 95 does not; the binary search probes 48 (no), then 24, 36, 42,
    45, 46, 47 (all fit) and stops at lo = 47, hi = 48. The scan then tries the next
    SCAN_AHEAD = 3 qualities after hi (49, 50, 51) and keeps the largest that fits."""
    assert SCAN_AHEAD == 3
    calls = _size_table(monkeypatch, set(range(1, 48)) | set(bumps))
    enc = BudgetEncoder(np.zeros((8, 8, 3), np.uint8), "jpeg")
    assert enc.fit(80) == (bytes(10), expect)
    assert len(calls) == len(set(calls))  # every size computed once (cached)
    assert 52 not in calls


def test_budget_fit_scan_stops_at_the_maximum_quality(monkeypatch):
    """Files fit up to quality 93 and again at 96, 97, above JPEG's q_max = 95 (the search's
    range). By hand: 1 fits, 95 does not; probes 48, 71, 83, 89, 92, 93 (fit), 94 (no): lo = 93.
    The scan would be 95..97 but stops at q_max (95 does not fit): 93, nothing above 95 tried."""
    calls = _size_table(monkeypatch, set(range(1, 94)) | {96, 97})
    enc = BudgetEncoder(np.zeros((8, 8, 3), np.uint8), "jpeg")
    assert enc.fit(80) == (bytes(10), 93)
    assert max(calls) == FORMATS["jpeg"].q_max == 95


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


def test_chain_names_the_gpu_as_sionna_does(monkeypatch):
    """Sionna accepts ``cpu`` / ``cuda:N`` only: a bare ``cuda`` (``--device cuda``) is the
    current GPU by index. Bare ``cuda`` reached Sionna unchanged and every ``+ldpc`` eval on a
    GPU stopped with "Invalid device: cuda" (seen on an H200, 2026-12-01)."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    assert LDPCChain(torch.device("cuda"))._dev == "cuda:2"
    assert LDPCChain(torch.device("cuda:1"))._dev == "cuda:1"
    assert LDPCChain(torch.device("cpu"))._dev == "cpu"


def test_layout_known_values():
    """The module's rules by hand: coded = n_data * bits_per_symbol, C = ceil(coded / 6144)
    codewords of n = floor(coded / C) coded and k = floor(n * rate) info bits, the file gets
    C k - 32 bits, and an MCS with k < 12 or C k <= 32 carries nothing."""
    assert BLOCK_LENGTH == 6144 and HEADER_BITS == 32  # peers' n; a 32-bit length header
    qpsk = get_mcs("qpsk-1/2")
    # 20000 coded bits: C = ceil(3.26) = 4 codewords of n = 5000, k = 2500.
    lay = layout(10000, qpsk)
    assert lay == Layout(n=5000, k=2500, codewords=4) and lay.file_bits == 4 * 2500 - 32
    # n floors: 20002 / 4 = 5000.5 -> 5000 (4 x 5001 bits would not fit in 20002).
    assert layout(10001, qpsk) == Layout(5000, 2500, 4)
    # k floors: 5000 / 3 = 1666.67 -> 1666; 16QAM-2/3: 12004 bits, n = 6002, 4001.33 -> 4001.
    assert layout(10000, get_mcs("qpsk-1/3")) == Layout(5000, 1666, 4)
    assert layout(3001, get_mcs("16qam-2/3")) == Layout(6002, 4001, 2)
    # The block length is 6144 exactly: 6144 coded bits are one codeword, 6145 need two.
    bpsk = get_mcs("bpsk-1/2")
    assert layout(6144, bpsk) == Layout(6144, 3072, 1)
    assert layout(6145, bpsk) == Layout(3072, 1536, 2)
    assert layout(6145, bpsk, block_length=6145) == Layout(6145, 3072, 1)
    # Too small: k = floor(98 / 3) = 32 info bits hold only the header; 99 bits give k = 33.
    third = get_mcs("bpsk-1/3")
    assert layout(98, third) is None and layout(99, third) == Layout(99, 33, 1)
    # k < 12 carries nothing even when C k > 32: 10 codewords of n = 33 (k = 11), of 36 (k = 12).
    assert layout(330, third, block_length=33) is None
    assert layout(360, third, block_length=36) == Layout(36, 12, 10)
    assert layout(0, bpsk) is None


@settings(max_examples=200, deadline=None)
@given(
    n_data=st.integers(200, 300_000),
    mcs=st.sampled_from(MCS_TABLE),
    block_length=st.integers(128, 20_000),
)
def test_layout_uses_the_budget_with_the_fewest_codewords(n_data, mcs, block_length):
    """Any size: C codewords of n <= block_length bits fit the n_data symbols' coded bits and
    leave fewer than C of them unused, C is the fewest the block length allows, and k is the
    largest info-bit count with k / n <= rate. (With n_data >= 200 and block_length >= 128 every
    MCS carries something: n >= 64, k >= 21.)"""
    lay = layout(n_data, mcs, block_length)
    assert lay is not None
    coded = n_data * mcs.bits_per_symbol
    assert lay.n <= block_length
    assert lay.codewords * lay.n <= coded < lay.codewords * (lay.n + 1)
    assert (lay.codewords - 1) * block_length < coded
    assert lay.k <= lay.n * mcs.rate < lay.k + 1  # exact: rate is a Fraction
    assert lay.file_bits == lay.codewords * lay.k - HEADER_BITS


class _Recorder(Channel):
    """A channel that keeps ``(sent, received)`` of every data transmission (not the zeros
    :func:`sample_fading` sends to advance the generator)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[torch.Tensor, torch.Tensor]] = []

    def apply(
        self, z: torch.Tensor, state: ChannelState, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, ChannelState]:
        y, state = super().apply(z, state, generator)
        if bool(z.abs().amax() > 0):
            self.sent.append((z.clone(), y.clone()))
        return y, state


def _app_llrs(x: torch.Tensor, no: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Exact APP LLRs ``log P(b_j = 1 | x) / P(b_j = 0 | x)`` (Sionna's sign) of symbols ``x``
    [M] with complex noise variance ``no`` [M]; ``points[i]`` carries the bits of ``i``, MSB
    first. Returns [M * bits] in transmission order."""
    bps = int(math.log2(points.numel()))
    labels = (torch.arange(points.numel())[:, None] >> torch.arange(bps - 1, -1, -1)) & 1
    metric = -(x[:, None] - points[None]).abs().pow(2) / no[:, None]  # [M, 2^bps]

    def lse(mask: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(metric.masked_fill(~mask, -math.inf), dim=1)

    llr = [lse(labels[:, j] == 1) - lse(labels[:, j] == 0) for j in range(bps)]
    return torch.stack(llr, dim=1).reshape(-1)


def test_ldpc_demapper_gets_the_zero_forced_symbol_and_its_noise(monkeypatch):
    """Per-symbol fading (|h| = 2 or 0.8, rotating phase), perfect CSI: the demapper gets
    ``x_hat = y / h`` with the effective noise ``N0 / |h|^2`` (an AWGN link at the symbol's
    SNR), and the decoder gets the exact APP LLRs of 16QAM (not max-log) from them."""
    mcs = get_mcs("16qam-1/2")
    lay = layout(601, mcs, block_length=1300)
    # 2404 coded bits = 2 codewords of 1202 = 4 * 300 + 2: the second starts mid-symbol.
    assert lay == Layout(1202, 601, 2)
    idx = torch.arange(601, dtype=torch.float64)
    mag = torch.where(idx % 2 == 0, 2.0, 0.8).double()
    h = torch.polar(mag, 0.7 * idx).to(torch.complex64)[None]
    no = 0.05  # 13 dB; 19 dB and 11 dB per symbol
    state = ChannelState(h=h, no=torch.tensor([no]), h_hat=h)
    chain, channel = LDPCChain(torch.device("cpu")), _Recorder("rayleigh-fast")
    demapped: list[tuple[torch.Tensor, torch.Tensor]] = []
    decoded: list[torch.Tensor] = []
    mapper, demapper = chain.modem(4)
    enc, dec = chain.code(lay.k, lay.n)

    def spy_demapper(x: torch.Tensor, no_eff: torch.Tensor) -> torch.Tensor:
        demapped.append((x.clone(), no_eff.clone()))
        return demapper(x, no_eff)

    def spy_decoder(llr: torch.Tensor) -> torch.Tensor:
        decoded.append(llr.clone())
        return dec(llr)

    monkeypatch.setattr(chain, "modem", lambda bps: (mapper, spy_demapper))
    monkeypatch.setattr(chain, "code", lambda k, n: (enc, spy_decoder))
    data = np.random.default_rng(0).integers(0, 256, lay.file_bits // 8, np.uint8).tobytes()
    r = chain.send(data, mcs, lay, channel, state, torch.Generator().manual_seed(0))
    assert r.ok and r.decoded == data and len(decoded) == 2  # both chunks (1 codeword each)
    ((_, y),) = channel.sent
    x_hat = (y[0] / h[0]).to(torch.complex128)
    no_eff = no / mag**2  # N0 / |h|^2
    x0, no0 = demapped[0]
    torch.testing.assert_close(x0.to(torch.complex128), x_hat[: x0.numel()], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(no0.double(), no_eff[: no0.numel()], atol=0, rtol=1e-5)
    expect = _app_llrs(x_hat, no_eff, mapper.constellation().to(torch.complex128))
    got = torch.cat(decoded).reshape(-1).double()
    assert got.numel() == lay.codewords * lay.n == expect.numel()
    torch.testing.assert_close(got, expect, atol=1e-3, rtol=1e-4)


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
    assert tx.counts["fallback"].tolist() == [0]
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
    assert tx.counts["fallback"].tolist() == [1, 1]  # per image, as the sweep counts them


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


def test_ldpc_scheme_cuts_the_file_into_its_block_length(astronaut):
    """At 30 dB every codeword the file needs is decoded: ceil((32 + file bits) / k) of them,
    k from the scheme's block length (by default BLOCK_LENGTH = 6144). 128 x 128 at CBR 1/8:
    6144 symbols, 24576 coded bits at 16QAM: 4 x (6144, 3072), or 12 x (2048, 1024)."""
    x, mcs = astronaut, get_mcs("16qam-1/2")
    for block_length, lay in ((None, Layout(6144, 3072, 4)), (2048, Layout(2048, 1024, 12))):
        kw = {} if block_length is None else {"block_length": block_length}
        s = LDPCScheme("jpeg", mcs=mcs, cbr=1 / 8, **kw)
        assert s.block_length == (block_length or 6144)
        tx = s.transmit(x, Channel("awgn"), 30.0, torch.Generator().manual_seed(0))
        assert tx.cbr.data_symbols == 6144 and layout(6144, mcs, s.block_length) == lay
        (bits,) = tx.info["file_bits"]
        assert 0 < bits <= lay.file_bits and tx.info["fallbacks"] == 0
        assert tx.info["codewords"] == math.ceil((HEADER_BITS + bits) / lay.k)


def test_envelope_ties_go_to_the_lowest_efficiency(astronaut):
    """When MCSs carry files of equal PSNR (here every one fits the top quality) the least
    efficient, most robust one is tried first, whatever the table's order; at 30 dB it decodes,
    so it is the only trial. 16 x 16 at CBR 14: 10752 symbols; bpsk-1/2 carries 2 x 2688 - 32 =
    5344 bits, more than the JPEG at quality 95 (about 4400)."""
    x = F.interpolate(astronaut, size=(16, 16), mode="area").clamp(0, 1)
    table = ("16qam-3/4", "qpsk-1/2", "bpsk-1/2")  # efficiency 3, 1, 1/2: decreasing
    s = LDPCScheme("jpeg", cbr=14, mcs_table=table)
    n = s.cbr(16, 16, Channel("awgn")).data_symbols
    enc = BudgetEncoder(to_uint8_hwc(x[0]), "jpeg")
    for name in table:  # a tie: the same file for every MCS
        assert enc.fit(layout(n, get_mcs(name)).file_bits)[1] == FORMATS["jpeg"].q_max
    tx = s.transmit(x, Channel("awgn"), 30.0, torch.Generator().manual_seed(0))
    assert tx.info["mcs"] == ["bpsk-1/2"] and tx.info["trials"] == 1
    assert tx.info["quality"] == [FORMATS["jpeg"].q_max]


def _noises(scheme: LDPCScheme, images: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """The noise ``y - z`` each image's transmission saw over AWGN at 20 dB (one MCS each)."""
    channel = _Recorder("awgn")
    tx = scheme.transmit(images, channel, 20.0, torch.Generator().manual_seed(seed))
    assert tx.info["trials"] == len(images) == len(channel.sent)
    return [(y - z)[0] for z, y in channel.sent]


def _same(u: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether two noise draws agree on their common length."""
    m = min(u.numel(), v.numel())
    return torch.allclose(u[:m], v[:m], atol=1e-5, rtol=0)


def test_ldpc_noise_is_drawn_per_image_index_and_mcs(astronaut):
    """Each (image index, MCS) gets its own noise from the caller's generator: two copies of
    one image see different noise; an index sees the same noise whatever the images of the
    batch; another MCS, or another generator seed, gives other noise."""
    a = F.interpolate(astronaut, size=(32, 32), mode="area").clamp(0, 1)[0]
    b = a.flip(-1)
    qpsk = LDPCScheme("jpeg", mcs="qpsk-1/2", cbr=2)
    ref = _noises(qpsk, torch.stack([a, a, b]), 0)
    assert not _same(ref[0], ref[1])  # the same symbols, each its own noise
    swapped = _noises(qpsk, torch.stack([b, a, a]), 0)
    assert all(_same(u, v) for u, v in zip(ref, swapped, strict=True))
    assert not _same(ref[1], ref[2]) and not _same(ref[0], ref[2])
    other_seed = _noises(qpsk, torch.stack([a, a, b]), 1)
    assert not any(_same(u, v) for u, v in zip(ref, other_seed, strict=True))
    # Another MCS: compare the real parts (the first half of one randn draw).
    qam = _noises(LDPCScheme("jpeg", mcs="16qam-1/2", cbr=2), torch.stack([a, a, b]), 0)
    assert not any(_same(u.real, v.real) for u, v in zip(ref, qam, strict=True))


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


def test_the_first_ldpc_code_keeps_torch_global_random_state():
    """The LDPC chain's first code (Sionna imported there, in a fresh process) leaves torch's
    global random state as seeded: importing Sionna reseeds torch's default generator."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import torch\n"
        "from semcom.separation.ldpc import LDPCChain\n"
        "assert 'sionna' not in sys.modules\n"
        "torch.manual_seed(0)\n"
        "torch.rand(3)\n"
        "LDPCChain(torch.device('cpu')).code(40, 80)\n"
        "print(torch.initial_seed(), *torch.rand(2).tolist())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    torch.manual_seed(0)
    assert out[0] == "0" and [float(x) for x in out[1:]] == torch.rand(5)[3:].tolist()
