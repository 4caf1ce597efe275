"""Channel conventions: packing, power per image, SNR = Es/N0, equalise + normalise, CBR."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from semcom.channels import (
    CBRReport,
    Channel,
    ChannelState,
    cbr_report,
    complex_to_real,
    equalize,
    format_cbr,
    normalize_power,
    pack,
    parse_cbr,
    real_to_complex,
    symbols_to_unit_real,
    unpack,
)
from semcom.channels.cbr import SCALAR_SIDE_SYMBOLS
from semcom.link import AnalogLink


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ packing and power
@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 4),
    shape=st.lists(st.integers(1, 7), min_size=1, max_size=3),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(1e-3, 1e3),
)
def test_pack_roundtrip_exact_and_unit_power(b, shape, seed, scale):
    lat = torch.randn(b, *shape, generator=gen(seed), dtype=torch.float64) * scale
    p = pack(lat)
    assert p.z.shape == (b, math.ceil(math.prod(shape) / 2))
    power = p.z.abs().pow(2).mean(dim=-1)
    torch.testing.assert_close(power, torch.ones(b, dtype=torch.float64), atol=1e-5, rtol=0)
    back = unpack(complex_to_real(p.z) * math.sqrt(2.0), p)
    torch.testing.assert_close(back, lat, atol=1e-9 * scale, rtol=1e-9)


def test_real_complex_mapping_convention():
    # c_k = v_k + j v_{k+L/2} (README "Conventions")
    v = torch.arange(6.0).unsqueeze(0)
    c = real_to_complex(v)
    assert c.tolist() == [[complex(0, 3), complex(1, 4), complex(2, 5)]]
    assert torch.equal(complex_to_real(c), v)
    with pytest.raises(ValueError, match="even"):
        real_to_complex(torch.zeros(1, 5))


def test_power_is_per_image_not_per_batch():
    a = torch.randn(1, 64, generator=gen(1))
    loud = 1000.0 * torch.randn(1, 64, generator=gen(2))
    alone = pack(a).z
    together = pack(torch.cat([a, loud])).z[:1]
    torch.testing.assert_close(alone, together)
    torch.testing.assert_close(
        pack(torch.cat([a, loud])).z.abs().pow(2).mean(-1), torch.ones(2), atol=1e-5, rtol=0
    )


# ---------------------------------------------------------------------------- AWGN
@pytest.mark.parametrize("snr_db", [-20.0, 0.0, 30.0])
def test_awgn_empirical_snr(snr_db):
    n = 1_000_000
    z = pack(torch.randn(1, 2 * n, generator=gen(3))).z
    y, _state = Channel("awgn")(z, snr_db, gen(4))
    noise_power = (y - z).abs().pow(2).mean()
    measured = 10 * math.log10(z.abs().pow(2).mean() / noise_power)
    assert abs(measured - snr_db) < 0.1
    # Sionna convention: complex noise, half the power in each real dimension
    assert abs(((y - z).real.var() / (y - z).imag.var()).item() - 1.0) < 0.01


def test_snr_per_image_in_one_batch():
    snrs = torch.tensor([-10.0, 0.0, 10.0, 20.0])
    z = pack(torch.randn(4, 200_000, generator=gen(5))).z
    y, state = Channel("awgn")(z, snrs, gen(6))
    measured = 10 * torch.log10(1.0 / (y - z).abs().pow(2).mean(-1))
    assert torch.allclose(measured, snrs.to(measured), atol=0.1)
    torch.testing.assert_close(state.no, torch.pow(10.0, -snrs / 10).to(state.no))


# --------------------------------------------------------- equalise + normalise
def _check_regression(f, f_tilde, d):
    """Regress f_tilde on f: coefficient sqrt(1-d), residual variance d (within 2%)."""
    coef = (f_tilde * f).sum() / (f * f).sum()
    resid = f_tilde - coef * f
    assert abs(coef.item() / math.sqrt(1 - d) - 1) < 0.02
    assert abs(resid.var().item() / d - 1) < 0.02


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0])
def test_equalize_awgn(snr_db):
    f_img = torch.randn(2, 400_000, generator=gen(7))
    p = pack(f_img)
    y, state = Channel("awgn")(p.z, snr_db, gen(8))
    eq = equalize(y, state)
    f = complex_to_real(p.z) * math.sqrt(2)
    d = 1 / (1 + 10 ** (snr_db / 10))
    assert eq.d.shape == (2, 1)
    torch.testing.assert_close(eq.d, torch.full((2, 1), d), rtol=1e-5, atol=0)
    for i in range(2):
        _check_regression(f[i], eq.f_tilde[i], d)
    # unit power after normalisation
    assert abs(eq.f_tilde.pow(2).mean().item() - 1) < 0.01


def test_equalize_slow_rayleigh_per_image():
    b = 6
    p = pack(torch.randn(b, 300_000, generator=gen(9)))
    y, state = Channel("rayleigh-slow")(p.z, 5.0, gen(10))
    eq = equalize(y, state)
    f = complex_to_real(p.z) * math.sqrt(2)
    assert eq.d.shape == (b, 1)
    g = state.h.abs().pow(2)[:, 0]
    torch.testing.assert_close(eq.d[:, 0], state.no / (g + state.no))
    for i in range(b):
        _check_regression(f[i], eq.f_tilde[i], eq.d[i, 0].item())


def test_equalize_fast_rayleigh_per_element():
    p = pack(torch.randn(1, 2_000_000, generator=gen(11)))
    y, state = Channel("rayleigh-fast")(p.z, 3.0, gen(12))
    eq = equalize(y, state)
    f = complex_to_real(p.z) * math.sqrt(2)
    assert eq.d.shape == f.shape
    # per-element d: normalise each element by its own level, then regress
    d = eq.d[0]
    u = (eq.f_tilde[0] - (1 - d).sqrt() * f[0]) / d.sqrt()
    assert abs(u.var().item() - 1) < 0.02  # unit residual once scaled by sqrt(d_i)
    # bins of similar d: coefficient sqrt(1-d), residual variance d
    for lo, hi in [(0.05, 0.1), (0.3, 0.35), (0.7, 0.75)]:
        m = (d > lo) & (d < hi)
        assert m.sum() > 20_000
        dm = d[m].mean().item()
        _check_regression(f[0][m], eq.f_tilde[0][m], dm)


def test_estimated_csi_counts_pilots_and_is_close():
    p = pack(torch.randn(8, 5000, generator=gen(13)))
    ch = Channel("rayleigh-slow", csi="estimated", pilots=64)
    _y, state = ch(p.z, 20.0, gen(14))
    assert state.pilot_symbols == 64
    err = (state.h_hat - state.h).abs().pow(2).mean().item()
    # LS error variance N0 / pilots = 0.01 / 64
    assert 0.3 * 0.01 / 64 < err < 3 * 0.01 / 64
    fast = Channel("rayleigh-fast", csi="estimated", pilots=2, coherence=10)
    assert fast.pilot_symbols(2500) == 2 * 250
    assert Channel("awgn").pilot_symbols(2500) == 0


def test_fast_fading_coherence_blocks():
    """``coherence=L``: one Rayleigh gain per block of L symbols (the last block cut short),
    independent CN(0, 1) across blocks; estimated CSI is one LMMSE estimate per block from its
    own pilots, with error variance s2 / (1 + s2), s2 = N0 / pilots."""
    m, L = 20_005, 10  # 2001 blocks, the last of 5 symbols
    p = pack(torch.randn(4, 2 * m, generator=gen(33)))
    _y, state = Channel("rayleigh-fast", csi="estimated", pilots=4, coherence=L)(p.z, 0.0, gen(34))
    assert state.h.shape == (4, m) and state.pilot_symbols == 4 * 2001
    blocks = torch.nn.functional.pad(state.h, (0, 2001 * L - m)).reshape(4, 2001, L)
    assert torch.equal(blocks[:, :-1], blocks[:, :-1, :1].expand(-1, -1, L))
    assert torch.equal(state.h[:, -5:], state.h[:, -5:-4].expand(-1, 5))
    g = state.h[:, ::L]  # [4, 2001] the block gains
    assert abs(g.abs().pow(2).mean().item() - 1) < 0.05  # E|h|^2 = 1
    assert abs(g.mean().item()) < 0.05  # zero mean
    assert (g[:, 1:] * g[:, :-1].conj()).mean().abs().item() < 0.05  # independent blocks
    hb = state.h_hat[:, ::L]
    assert torch.equal(state.h_hat[:, : L * 2000].reshape(4, 2000, L)[..., -1], hb[:, :2000])
    s2 = 1.0 / 4
    err = (hb - g).abs().pow(2).mean().item()
    assert abs(err / (s2 / (1 + s2)) - 1) < 0.1


def test_awgn_estimated_csi_is_least_squares():
    """AWGN with ``csi="estimated"``: the gain (1) is estimated by LS from the pilots, with
    error variance N0 / pilots and no shrinkage (no fading prior), and the pilots are charged."""
    p = pack(torch.randn(20_000, 8, generator=gen(35)))
    _y, state = Channel("awgn", csi="estimated", pilots=8)(p.z, 3.0, gen(36))
    s2 = 10 ** (-3.0 / 10) / 8
    torch.testing.assert_close(state.h_err, torch.full((20_000,), s2), rtol=1e-5, atol=0)
    assert state.pilot_symbols == 8
    e = state.h_hat[:, 0] - 1
    assert abs(e.abs().pow(2).mean().item() / s2 - 1) < 0.05
    assert abs(e.mean().item()) < 0.01  # unbiased (LS), not shrunk towards 0


@pytest.mark.parametrize(
    ("name", "b", "n", "pilots", "snr_db"),
    [("rayleigh-fast", 1, 2_000_000, 1, 0.0), ("rayleigh-slow", 4000, 500, 2, -3.0)],
)
def test_estimated_csi_equalizer_reports_the_true_noise_level(name, b, n, pilots, snr_db):
    """With estimated CSI, d accounts for the channel-estimation error: f_tilde =
    sqrt(1-d) f + sqrt(d) u with unit-variance u uncorrelated with f, per element (LMMSE
    estimate, error variance h_err added to N0). Ignoring h_err leaves var(u) at 1.5 / 1.25 here."""
    p = pack(torch.randn(b, n, generator=gen(31)))
    y, state = Channel(name, csi="estimated", pilots=pilots)(p.z, snr_db, gen(32))
    s2 = 10 ** (-snr_db / 10) / pilots
    torch.testing.assert_close(state.h_err, torch.full((b,), s2 / (1 + s2)), rtol=1e-5, atol=0)
    err = (state.h_hat - state.h).abs().pow(2).mean().item()
    assert abs(err / (s2 / (1 + s2)) - 1) < 0.05
    eq = equalize(y, state)
    f = complex_to_real(p.z) * math.sqrt(2)
    d = eq.d.expand_as(f)
    u = (eq.f_tilde - (1 - d).sqrt() * f) / d.sqrt()
    assert abs(u.var().item() - 1) < 0.03
    assert abs((u * f).mean().item()) < 0.01


# ---------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("name", ["awgn", "rayleigh-slow", "rayleigh-fast"])
def test_seed_determinism(name):
    p = pack(torch.randn(2, 1000, generator=gen(15)))
    ch = Channel(name)
    y1, s1 = ch(p.z, 0.0, gen(42))
    y2, s2 = ch(p.z, 0.0, gen(42))
    y3, _ = ch(p.z, 0.0, gen(43))
    assert torch.equal(y1, y2) and torch.equal(s1.h, s2.h)
    assert not torch.allclose(y1, y3)


def test_used_channel_pickles_and_copies_with_the_same_draws():
    """Sionna's blocks (built on first use) are not carried by a pickle or deepcopy (worker
    processes): the copy rebuilds them and draws the same numbers from the same generator."""
    import copy
    import pickle

    p = pack(torch.randn(2, 1000, generator=gen(15)))
    ch = Channel("rayleigh-fast", csi="estimated", coherence=4)
    y1, s1 = ch(p.z, 5.0, gen(42))
    for other in (pickle.loads(pickle.dumps(ch)), copy.deepcopy(ch)):
        y2, s2 = other(p.z, 5.0, gen(42))
        assert torch.equal(y1, y2) and torch.equal(s1.h_hat, s2.h_hat)


@pytest.mark.parametrize("name", ["awgn", "rayleigh-slow", "rayleigh-fast"])
def test_extreme_snrs(name):
    lat = torch.randn(2, 16, 4, 4, generator=gen(16))
    p = pack(lat)
    ch = Channel(name)
    y, state = ch(p.z, float("inf"), gen(1))
    eq = equalize(y, state)
    assert torch.all(eq.d == 0)
    torch.testing.assert_close(unpack(eq.f_tilde, p), lat, atol=1e-5, rtol=1e-5)
    y, state = ch(p.z, -40.0, gen(2))
    eq = equalize(y, state)
    assert torch.isfinite(eq.f_tilde).all() and torch.isfinite(eq.d).all()
    assert torch.isfinite(unpack(eq.lmmse(), p)).all()


def test_deep_fade_gives_no_nan():
    p = pack(torch.randn(1, 8, generator=gen(17)))
    y, state = Channel("rayleigh-fast")(p.z, 10.0, gen(3))
    h = state.h.clone()
    h[0, 1] = 0
    from dataclasses import replace

    state = replace(state, h=h, h_hat=h)
    eq = equalize(y, state)
    assert torch.isfinite(eq.f_tilde).all()
    assert eq.deep_fades.tolist() == [1]
    assert eq.d[0, 1] == 1 and eq.d[0, 1 + 4] == 1


def test_deep_fade_of_a_whole_image_under_slow_fading():
    """One gain per image: |h| = 0 erases all of its symbols (counted: M each)."""
    from dataclasses import replace

    p = pack(torch.randn(2, 20, generator=gen(18)))
    y, state = Channel("rayleigh-slow")(p.z, 10.0, gen(4))
    h = state.h.clone()
    h[1] = 0
    eq = equalize(y, replace(state, h=h, h_hat=h))
    assert eq.deep_fades.tolist() == [0, 10]
    assert (eq.d[1] == 1).all() and (eq.d[0] < 1).all() and torch.isfinite(eq.f_tilde).all()


def test_link_counts_deep_fades_per_image(identity_codec):
    """A link whose channel erases some symbols (|h| = 0) decodes without NaN and counts the
    erased symbols per image (Transmission.counts, said by `transmit -v`)."""
    from dataclasses import replace

    from semcom.link import AnalogLink, describe_counts

    class Erasing(Channel):
        def __call__(self, z, snr_db, generator=None):
            y, state = super().__call__(z, snr_db, generator)
            h = state.h.clone()
            h[1, :5] = 0  # five symbols of the second image
            return y, replace(state, h=h, h_hat=h)

    x = torch.rand(2, 3, 8, 8, generator=gen(5))
    tx = AnalogLink(identity_codec()).transmit(x, Erasing("rayleigh-fast"), 10.0, gen(6))
    assert torch.isfinite(tx.images).all()
    assert tx.counts["deep_fades"].tolist() == [0, 5] and tx.info["deep_fades"] == 5
    assert describe_counts({"deep_fades": 5}) == (
        "5 symbols in deep fades (|h|^2 below the equaliser's floor: erased)"
    )


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown channel"):
        Channel("rician")
    with pytest.raises(ValueError, match="CSI"):
        Channel("awgn", csi="genie")
    z = pack(torch.randn(2, 8)).z
    with pytest.raises(ValueError, match="2 images"):
        Channel("awgn")(z, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        Channel("awgn")(z, float("nan"))
    with pytest.raises(ValueError, match="complex"):
        Channel("awgn")(torch.randn(2, 8), 0.0)


# --------------------------------------------------------------------------- CBR
def test_cbr_convention():
    # paper B: a 16x16x16 latent for a 128x128 RGB image is 2048/49152 = 1/24
    r = cbr_report((16, 16, 16), (128, 128))
    assert r.data_symbols == 2048 and format_cbr(r.cbr) == "1/24"
    # TAEF2: 32 channels at 1/8 resolution -> 1/12
    assert format_cbr(cbr_report((32, 64, 96), (512, 768)).cbr) == "1/12"
    # DeepJSCC: c channels at 1/4 resolution -> c/96
    assert format_cbr(cbr_report((16, 8, 8), (32, 32)).cbr) == "1/6"
    r = cbr_report((8, 8, 8), (32, 32), pilot_symbols=16, side_symbols=16)
    assert r.channel_uses == 256 + 32
    assert "pilot" in str(r) and "side" in str(r)
    assert parse_cbr("1/16") == 0.0625 and parse_cbr("0.0625") == 0.0625
    with pytest.raises(ValueError):
        parse_cbr("one sixteenth")
    assert format_cbr(409.6 / 49152) == "1/120"
    # a near miss is not printed as a fraction: 16384 data + 16 side symbols for 256 x 256 RGB
    assert format_cbr(16400 / 196608) == "0.08341" and format_cbr(17408 / 196608) == "17/192"
    # an odd number of real values: the last complex symbol carries one (75 reals -> 38 uses),
    # as many as pack sends
    assert cbr_report((3, 5, 5), (5, 5)).data_symbols == 38
    assert pack(torch.randn(1, 3, 5, 5)).n_symbols == 38 == pack(torch.randn(1, 75)).z.shape[-1]


@pytest.mark.parametrize("needs_scale", [False, True])
@pytest.mark.parametrize(
    ("channel", "pilots"),
    [(Channel("awgn"), 0), (Channel("rayleigh-slow", csi="estimated", pilots=16), 16)],
)
def test_link_charges_pilots_and_side_information(identity_codec, needs_scale, channel, pilots):
    """A link's CBR counts every channel use it spends: data, the channel's pilots (estimated
    CSI) and the codec's side information (the latent RMS of codecs that need it), and each
    transmission reports that same budget."""
    from semcom.link import AnalogLink

    codec = identity_codec()
    codec.needs_scale = needs_scale
    link = AnalogLink(codec)
    h, w = 8, 6
    side = SCALAR_SIDE_SYMBOLS if needs_scale else 0
    rep = link.cbr(h, w, channel)
    data = math.ceil(3 * h * w / 2)  # the identity latent: 3HW reals in complex symbols
    assert (rep.data_symbols, rep.pilot_symbols, rep.side_symbols) == (data, pilots, side)
    assert rep.cbr == (data + pilots + side) / (3 * h * w)
    tx = link.transmit(torch.rand(2, 3, h, w, generator=gen(5)), channel, 10.0, gen(6))
    assert tx.cbr == rep


@pytest.mark.parametrize(
    ("images", "match"),
    [
        (torch.rand(3, 8, 8), r"\[B, 3, H, W\], got \(3, 8, 8\)"),
        (torch.rand(1, 1, 8, 8), r"\[B, 3, H, W\]"),
        (255 * torch.rand(1, 3, 8, 8), "divide by 255"),
        (torch.ones(1, 3, 8, 8, dtype=torch.uint8), r"got torch.uint8 \(8-bit images"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
        (torch.rand(0, 3, 8, 8), "no images to send"),
    ],
)
def test_schemes_refuse_what_they_cannot_send(identity_codec, images, match):
    """Every scheme (analog link and separation) checks its input: not [B, 3, H, W] or not
    in [0, 1] is one clear ValueError, not a shape error deep inside or a silent result."""
    from semcom.link import AnalogLink
    from semcom.separation.capacity import CapacityScheme

    for scheme in (AnalogLink(identity_codec()), CapacityScheme("jpeg")):
        with pytest.raises(ValueError, match=match):
            scheme.transmit(images, Channel("awgn"), 10.0, gen(9))


def test_link_takes_any_float_dtype_and_returns_plain_tensors(identity_codec):
    """float64 / float16 images are sent as float32 ones (they failed deep in a convolution);
    the reconstructions are ordinary float32 tensors a notebook can edit or differentiate
    through (inference-mode tensors refuse both)."""
    from semcom.link import AnalogLink

    link = AnalogLink(identity_codec())
    x = torch.rand(2, 3, 8, 6, generator=gen(10))
    ref = link.transmit(x, Channel("awgn"), 5.0, gen(11)).images
    for dtype in (torch.float64, torch.float16):
        out = link.transmit(x.to(dtype), Channel("awgn"), 5.0, gen(11)).images
        assert out.dtype == torch.float32
        assert torch.allclose(out, ref, atol=2e-3 if dtype == torch.float16 else 1e-6)
    ref[0, 0, 0, 0] = 0.5  # in place: no "inference tensor" error
    w = torch.ones(1, requires_grad=True)
    (ref * w).sum().backward()
    assert w.grad is not None


def test_link_restores_each_latents_scale(identity_codec):
    """A codec that ``needs_scale`` gets each image's latent RMS back (the side information
    the CBR charges): over a noiseless link the identity codec returns every image exactly,
    whatever its power; without the rescaling it would get the unit-power latent."""
    from semcom.link import AnalogLink

    codec = identity_codec()
    x = torch.rand(2, 3, 8, 6, generator=gen(7)) * torch.tensor([0.3, 0.9]).view(2, 1, 1, 1)
    codec.needs_scale = True
    tx = AnalogLink(codec).transmit(x, Channel("awgn"), float("inf"), gen(8))
    assert torch.allclose(tx.images, x, atol=1e-5)
    codec.needs_scale = False  # the control: the scale is lost
    tx = AnalogLink(codec).transmit(x, Channel("awgn"), float("inf"), gen(8))
    assert not torch.allclose(tx.images, x, atol=1e-2)


def test_equalize_refuses_real_symbols_and_snr_to_no_takes_numbers():
    """Real symbols (``y.real`` by mistake) are refused (they were zero-padded silently);
    ``snr_to_no`` takes a plain number as ``db_to_linear`` does."""
    from semcom.channels.models import snr_to_no

    z = pack(torch.randn(2, 4, 4, 4, generator=gen(30))).z
    y, state = Channel("awgn")(z, 10.0, gen(31))
    with pytest.raises(ValueError, match="complex symbols"):
        equalize(y.real, state)
    assert float(snr_to_no(10.0)) == pytest.approx(0.1)
    assert float(snr_to_no(float("inf"))) == 0.0


@pytest.mark.parametrize("name", ["awgn", "rayleigh-slow", "rayleigh-fast"])
@pytest.mark.parametrize("csi", ["perfect", "estimated"])
def test_decoder_snr_is_the_equalised_snr(name, csi):
    """An SNR-adaptive decoder is told the SNR of the latent it reads: with one gain per image
    the equaliser's ``(1 - d) / d`` (= |h_hat|^2 / (N0 + h_err)), exactly the nominal SNR on
    AWGN with perfect CSI and |h|^2 times it on slow fading; the nominal (mean) SNR when the
    gain changes per symbol (fast fading)."""
    from semcom.channels import decoder_snr_db

    snr = torch.tensor([-10.0, 0.0, 7.5, 20.0], dtype=torch.float64)
    p = pack(torch.randn(4, 64, generator=gen(21)))
    pilots = 4 if csi == "estimated" else None
    y, state = Channel(name, csi=csi, pilots=pilots)(p.z, snr, gen(22))
    told = decoder_snr_db(snr, state)
    assert told.dtype == torch.float64 and told.shape == (4,)
    if name == "rayleigh-fast":
        assert torch.equal(told, snr)
        return
    eq_db = equalize(y, state).snr_db[:, 0].double()
    torch.testing.assert_close(told, eq_db, atol=1e-4, rtol=0)
    if csi == "perfect":
        want = snr + 10 * torch.log10(state.h[:, 0].abs().double() ** 2)
        assert torch.equal(told, want)
        if name == "awgn":
            assert torch.equal(told, snr)
        else:  # one fade per image: not the nominal SNR
            assert (told - snr).abs().min() > 1e-3


def test_decoder_snr_of_deep_fades_and_noiseless_links_is_finite():
    """|h| = 0 (the equaliser erases the image) tells the decoder the lower bound, a
    noiseless link the upper one: never NaN or an infinity the codec would refuse."""
    from dataclasses import replace

    from semcom.channels import DECODER_SNR_RANGE_DB, decoder_snr_db

    p = pack(torch.randn(3, 20, generator=gen(23)))
    for snr in (torch.tensor([5.0, 5.0, 5.0]), torch.full((3,), math.inf)):
        _, state = Channel("rayleigh-slow")(p.z, snr, gen(24))
        h = state.h.clone()
        h[1] = 0
        for s in (replace(state, h=h, h_hat=h), replace(state, h=h, h_hat=h, h_err=state.no)):
            told = decoder_snr_db(snr.double(), s)
            assert torch.isfinite(told).all() and told[1] == DECODER_SNR_RANGE_DB[0]
        if math.isinf(snr[0]):
            assert told[0] == DECODER_SNR_RANGE_DB[1]


def test_snr_below_the_limit_or_complex_is_refused():
    """Below ~-385 dB N0 overflowed float32: NaN images or a confusing error downstream; a
    complex SNR lost its imaginary part with only a warning."""
    from semcom.channels.models import SNR_LIMIT_DB, as_snr_tensor

    assert as_snr_tensor(-SNR_LIMIT_DB, 2).tolist() == [-SNR_LIMIT_DB] * 2
    with pytest.raises(ValueError, match="below -150 dB"):
        as_snr_tensor([0.0, -390.0], 2)
    with pytest.raises(ValueError, match="real numbers of dB"):
        as_snr_tensor(torch.tensor([1 + 2j]), 1)
    # not numbers: one clear TypeError (torch said "new(): invalid data type 'str'")
    for bad, shown in (("0", "str '0'"), (None, "NoneType None"), ([0.0, "x"], "list")):
        with pytest.raises(TypeError, match=f"snr_db must be numbers of dB .*got {shown}"):
            as_snr_tensor(bad, 2)


def test_snr_of_bools_or_complex_numbers_is_one_value_error_in_every_form():
    """``True`` was sent at 1 dB (a bool tensor was refused), a complex NumPy array lost its
    imaginary part with only a warning, a complex number was a TypeError (a complex tensor a
    ValueError): one ValueError naming snr_db for each, also through a channel."""
    import numpy as np

    from semcom.channels.models import as_snr_tensor

    for bad in (True, np.bool_(False), [0.0, True], np.array([True, False]), torch.tensor(True),
                1 + 2j, np.complex64(1 + 2j), [0.0, 1j], np.array([1 + 2j]),
                torch.tensor([1 + 2j])):  # fmt: skip
        with pytest.raises(ValueError, match="snr_db must hold real numbers of dB, not"):
            as_snr_tensor(bad, 2)
    z = pack(torch.randn(2, 8)).z
    with pytest.raises(ValueError, match="snr_db must hold real numbers of dB, not bools"):
        Channel("awgn")(z, True, torch.Generator().manual_seed(0))
    # numbers of any real kind pass as before, in float64
    for good in (3, 3.0, np.float32(3.0), np.array([3, 3]), [3, 3.0], torch.tensor(3)):
        assert as_snr_tensor(good, 2).tolist() == [3.0, 3.0]


def test_snr_of_bytes_or_too_large_integers_is_refused_naming_snr_db():
    """``[b"1"]`` and ``bytearray(b"1")`` were sent at 49 dB (torch reads the byte values):
    TypeError, as a str; ``10**400`` raised a bare OverflowError: a ValueError naming snr_db."""
    from semcom.channels.models import as_snr_tensor
    from semcom.diffusion import db_to_linear

    for bad in ([b"1"], bytearray(b"1"), [0.0, bytearray(b"a")], ("1", 2.0), (b"1", b"2"),
                memoryview(b"1")):  # fmt: skip
        with pytest.raises(TypeError, match="snr_db must be numbers of dB"):
            as_snr_tensor(bad, 1)
    with pytest.raises(TypeError, match="snr_db must be"):
        db_to_linear([b"1"])
    with pytest.raises(ValueError, match="snr_db must hold numbers of dB within"):
        as_snr_tensor(10**400, 1)
    assert as_snr_tensor(10**300, 1).item() == 1e300  # large but representable: as before


def test_channel_counts_refuse_strings_with_a_type_error():
    """A string where the pilot count goes is not a number (TypeError, as snr_db's), a bool
    or a float is a wrong value (ValueError), each naming the option."""
    with pytest.raises(TypeError, match=r"pilots must be an integer >= 1, got str '16'"):
        Channel("awgn", "estimated", pilots="16")
    with pytest.raises(TypeError, match="coherence must be an integer >= 1, got NoneType"):
        Channel("rayleigh-fast", coherence=None)
    for bad in (True, 2.0, 0):
        with pytest.raises(ValueError, match="pilots must be an integer >= 1"):
            Channel("awgn", "estimated", pilots=bad)


def test_channel_counts_of_numpy_integers_are_recorded_as_ints() -> None:
    """``pilots=np.int64(4)`` (from a NumPy grid) is kept as an ``int``: the results file
    records it (a NumPy integer made ``json.dumps`` fail after the whole sweep)."""
    import json

    import numpy as np

    from semcom.eval.sweep import results_document

    ch = Channel("rayleigh-fast", "estimated", pilots=np.int64(4), coherence=np.int32(2))
    assert type(ch.pilots) is int and type(ch.coherence) is int
    doc = json.loads(json.dumps(results_document([], "samples", 1, ch, {})))
    assert doc["channel"]["pilots"] == 4 and doc["channel"]["coherence"] == 2


def test_pack_gives_unit_energy_to_subnormal_latents() -> None:
    """A latent whose values are subnormal (float32 below ~1e-38, float64 below ~1e-308) is
    sent at unit power too: its scale-up by a power of two comes in two factors, each finite."""
    for dtype, tiny in ((torch.float32, 1e-40), (torch.float64, 1e-310)):
        lat = torch.tensor([[tiny, -tiny, 2 * tiny, 0.0]], dtype=dtype)
        power = pack(lat).z.abs().pow(2).mean(dim=-1).double()
        torch.testing.assert_close(power, torch.ones(1, dtype=torch.float64), atol=1e-5, rtol=0)


def test_pack_of_an_all_zero_latent_is_zero_with_finite_gradients() -> None:
    """An all-zero image (beside a normal one) is sent as zero symbols with RMS 0, not NaN,
    and gradients through it stay finite."""
    lat = torch.zeros(2, 6, dtype=torch.float64)
    lat[1] = torch.arange(1.0, 7.0)
    lat.requires_grad_()
    p = pack(lat)
    assert torch.equal(p.z[0], torch.zeros(3, dtype=torch.complex128)) and p.rms[0] == 0
    assert torch.isfinite(p.z).all()
    p.z.abs().pow(2).sum().backward()
    assert lat.grad is not None and torch.isfinite(lat.grad).all()


@pytest.mark.parametrize("shape", [(0, 4), (2, 0), (2, 0, 3), (5,)])
def test_pack_refuses_empty_latents_by_name(shape):
    """An empty batch or image, or a 1-D tensor (no batch axis), is a ValueError naming the
    shape (a bare reshape RuntimeError / amax IndexError before; a 1-D tensor was sent as that
    many one-value images)."""
    from semcom.channels import pack

    with pytest.raises(ValueError, match=r"latent \[B, \.\.\.\].*got shape"):
        pack(torch.ones(*shape))


def test_pack_refuses_other_dtypes_and_dir_lists_each_name_once():
    import semcom
    from semcom.channels import pack

    with pytest.raises(ValueError, match=r"floating-point latent, got torch\.int64"):
        pack(torch.ones(1, 4, dtype=torch.int64))  # (mean() errored before)
    # half / bfloat16 (an encoder under autocast: it was refused) pack in float32, as their
    # float32 values would, and gradients reach the latent
    x = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    for dtype in (torch.float16, torch.bfloat16):
        low = x.to(dtype).requires_grad_()
        packed = pack(low)
        ref = pack(low.detach().float())
        assert packed.z.dtype == torch.complex64 and torch.equal(packed.z, ref.z)
        packed.z.abs().sum().backward()
        assert low.grad is not None and low.grad.dtype == dtype and low.grad.abs().sum() > 0
    _ = semcom.channels  # imported: in globals() and SUBMODULES
    names = dir(semcom)
    assert len(names) == len(set(names)) and "channels" in names


def test_cbr_report_pilot_note():
    """Said only when the pilots take at least as many channel uses as the data, or when no
    data fits beside them."""
    assert cbr_report((4, 4, 4), (8, 8), pilot_symbols=31).pilot_note() is None  # 32 data
    note = cbr_report((4, 4, 4), (8, 8), pilot_symbols=32).pilot_note()
    assert note and "the pilots take 32 of the 64 channel uses (data 32)" in note
    assert "no data is sent" in CBRReport(0, 0, 0, 192).pilot_note()
    assert cbr_report((4, 4, 4), (8, 8)).pilot_note() is None


def test_default_pilots_per_block():
    """Estimated CSI: 16 pilots per image on AWGN / slow fading, one per fading block on
    fast fading (every symbol; every 4th with coherence 4)."""
    assert Channel("rayleigh-slow", "estimated").pilot_symbols(100) == 16
    assert Channel("awgn", "estimated").pilot_symbols(100) == 16
    assert Channel("rayleigh-fast", "estimated").pilot_symbols(100) == 100
    assert Channel("rayleigh-fast", "estimated", coherence=4).pilot_symbols(100) == 25
    assert Channel("rayleigh-fast").pilot_symbols(100) == 0


def test_a_weak_gain_is_not_a_deep_fade():
    """Only |h|^2 below 1e-12 is erased: |h| = 1e-3 at N0 = 1e-9 is equalised with
    d = N0 / (|h|^2 + N0)."""
    from semcom.channels.models import ChannelState

    z = pack(torch.randn(1, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)).z
    h = torch.full((1, 1), 1e-3, dtype=torch.complex128)
    no = torch.tensor([1e-9], dtype=torch.float64)
    eq = equalize(h * z, ChannelState(h=h, no=no, h_hat=h))
    assert int(eq.deep_fades.sum()) == 0
    want = torch.tensor([[1e-9 / (1e-6 + 1e-9)]], dtype=torch.float64)
    assert torch.allclose(eq.d.double(), want)


def test_link_refuses_images_slightly_outside_the_unit_range(identity_codec) -> None:
    """Images are accepted up to 1 % outside [0, 1] (rounding), not more: -0.1 or 1.2 (e.g.
    a normalisation left in) is a ValueError naming the range."""
    link = AnalogLink(identity_codec())
    x = torch.rand(1, 3, 8, 8, generator=gen(1))
    link.transmit(x * 1.005, Channel("awgn"), 10.0, gen(2))  # within the tolerance
    for bad in (x * 1.2, x - 0.1):
        with pytest.raises(ValueError, match=r"expected images in \[0, 1\]"):
            link.transmit(bad, Channel("awgn"), 10.0, gen(2))


def test_link_refuses_images_of_zero_height_or_width(identity_codec) -> None:
    """An empty crop (H or W = 0) is "no images to send", as an empty batch is."""
    link = AnalogLink(identity_codec())
    for shape in ((1, 3, 0, 8), (1, 3, 8, 0)):
        with pytest.raises(ValueError, match="no images to send"):
            link.transmit(torch.rand(*shape), Channel("awgn"), 10.0, gen(1))


def test_link_info_sums_deep_fades_over_the_batch(identity_codec) -> None:
    """``info['deep_fades']`` is the batch total of the per-image counts (2 + 5 = 7)."""
    from dataclasses import replace

    class Erasing(Channel):
        def __call__(self, z, snr_db, generator=None):
            y, state = super().__call__(z, snr_db, generator)
            h = state.h.clone()
            h[0, :2] = 0
            h[1, :5] = 0
            return y, replace(state, h=h, h_hat=h)

    x = torch.rand(2, 3, 8, 8, generator=gen(5))
    tx = AnalogLink(identity_codec()).transmit(x, Erasing("rayleigh-fast"), 10.0, gen(6))
    assert tx.counts["deep_fades"].tolist() == [2, 5] and tx.info["deep_fades"] == 7


def test_describe_counts_words_each_count_of_the_images() -> None:
    """Per-image counts read "(n of N)" over N images, none over one; zeros are left out."""
    from semcom.link import describe_counts

    counts = {"snr_clamped": 2, "step_clamped_high": 1, "step_clamped_low": 0}
    assert describe_counts(counts, of=24) == (
        "SNR estimate outside the estimator's range, clamped to it (2 of 24); "
        "SNR above the diffusion schedule: t* = 0, denoiser skipped (1 of 24)"
    )
    assert describe_counts({"snr_clamped": 1}) == (
        "SNR estimate outside the estimator's range, clamped to it"
    )
    assert describe_counts({"deep_fades": 0, "snr_clamped": 0}, of=3) == ""


def test_transmission_holds_float32_images_whatever_a_scheme_returns() -> None:
    """A scheme returning float64 (or float16) reconstructions gives float32 ones."""
    from semcom.channels import cbr_report
    from semcom.link import Transmission

    for dtype in (torch.float64, torch.float16):
        images = torch.full((1, 3, 2, 2), 0.5, dtype=dtype)
        tx = Transmission(images=images, cbr=cbr_report((3, 2, 2), (2, 2)))
        assert tx.images.dtype == torch.float32 and bool((tx.images == 0.5).all())


def test_link_weights_name_the_codec_denoiser_and_estimator(identity_codec) -> None:
    """``weights()`` fingerprints every network the link runs: the codec, the receiver's
    ``denoise`` network and the SNR estimator; a plain link names its codec only."""
    from semcom.fingerprint import codec_fingerprint
    from semcom.link import LMMSEReceiver

    class Denoising(LMMSEReceiver):
        def __init__(self) -> None:
            self.denoise = torch.nn.Linear(2, 2)

    codec, rx = identity_codec(), Denoising()
    est = torch.nn.Linear(3, 1)
    link = AnalogLink(codec, receiver=rx, snr_source="learned", estimator=est)
    assert link.weights() == {
        "codec": codec_fingerprint(codec),
        "denoiser": codec_fingerprint(rx.denoise),
        "snr_estimator": codec_fingerprint(est),
    }
    assert set(AnalogLink(codec).weights()) == {"codec"}


@pytest.mark.parametrize("name", ["awgn", "rayleigh-slow", "rayleigh-fast"])
@pytest.mark.parametrize("csi", ["perfect", "estimated"])
def test_gradients_flow_from_the_equalised_symbols_to_the_latent(name, csi):
    """pack -> channel -> equalize is differentiable in the latent (as its docstrings say: a
    user trains a JSCC encoder through it), with finite gradients."""
    x = torch.randn(2, 16, generator=torch.Generator().manual_seed(3), requires_grad=True)
    y, state = Channel(name, csi=csi)(pack(x).z, 5.0, torch.Generator().manual_seed(4))
    equalize(y, state).f_tilde.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_channel_refuses_options_that_change_nothing():
    """pilots with perfect CSI and a coherence block on a channel with one gain per image were
    accepted and ignored (the CLI refused --pilots without --csi estimated)."""
    with pytest.raises(ValueError, match="pilots=4 applies to csi='estimated'"):
        Channel("awgn", pilots=4)
    for name in ("awgn", "rayleigh-slow"):
        with pytest.raises(ValueError, match="coherence=4 applies to 'rayleigh-fast'"):
            Channel(name, coherence=4)
    assert Channel("rayleigh-fast", coherence=4).coherence == 4
    assert Channel("awgn", csi="estimated", pilots=4).pilots == 4


def test_link_refuses_a_codec_whose_latent_shape_miscounts_its_latent(identity_codec):
    """The CBR comes from ``codec.latent_shape``: a codec of your own whose ``latent_shape``
    forgets the padding to its multiple would report another CBR than it spends (1/4 fewer
    channel uses here, silently); the link refuses it, naming both shapes."""

    class Halving(identity_codec):
        name, multiple = "halving", 2

        def _encode(self, x, snr_db):
            return x[..., ::2, ::2]

        def _decode(self, latent, snr_db):
            return latent.repeat_interleave(2, -2).repeat_interleave(2, -1)

        def latent_shape(self, h, w):
            return (3, h // 2, w // 2)  # forgot the padding: 7x7 encodes to 4x4, not 3x3

    x = torch.rand(1, 3, 7, 7, generator=gen(0))
    with pytest.raises(ValueError, match=r"latent_shape\(7, 7\) = \(3, 3, 3\) .* \(3, 4, 4\)"):
        AnalogLink(Halving()).transmit(x, Channel("awgn"), 10.0, gen(1))
    tx = AnalogLink(Halving()).transmit(x[..., :6, :6], Channel("awgn"), 10.0, gen(1))
    assert tx.cbr.data_symbols == 3 * 3 * 3 // 2 + 1  # even sizes: the shapes agree

    class Overcounting(Halving):
        def latent_shape(self, h, w):
            return (3, h // 2 + 1, w // 2 + 1)  # more values than it encodes: a CBR too high

    with pytest.raises(ValueError, match=r"latent_shape\(6, 6\) = \(3, 4, 4\) .* \(3, 3, 3\)"):
        AnalogLink(Overcounting()).transmit(x[..., :6, :6], Channel("awgn"), 10.0, gen(1))


def test_a_channel_of_your_own_keeps_the_model_it_subclasses() -> None:
    """A subclass relabelled for its results (``name``) still runs the built-in model it
    called ``super().__init__`` with (``model``): AWGN's least-squares pilot estimate, not the
    Rayleigh LMMSE shrink; its per-symbol gains with estimated CSI are refused on a per-image
    model, whose pilots are charged once per image."""

    class PhaseNoise(Channel):
        def __init__(self, csi: str = "perfect") -> None:
            super().__init__("awgn", csi=csi)
            self.name = "awgn-phase-noise"

        def sample(self, z, snr_db, generator=None):
            state = super().sample(z, snr_db, generator)
            phase = torch.polar(
                torch.ones(z.shape), 0.1 * torch.randn(z.shape, generator=generator)
            )
            return ChannelState(h=phase.to(z.dtype), no=state.no, h_hat=torch.ones_like(z))

    class Relabelled(Channel):
        def __init__(self) -> None:
            super().__init__("awgn", csi="estimated")
            self.name = "my-awgn"

    z = torch.ones(4, 8, dtype=torch.complex64)
    _, ours = Relabelled()(z, 0.0, gen(2))
    _, theirs = Channel("awgn", csi="estimated")(z, 0.0, gen(2))
    assert torch.equal(ours.h_hat, theirs.h_hat)  # LS: no shrink by 1 / (1 + N0 / pilots)
    assert repr(Relabelled()) == "Channel('my-awgn', csi='estimated', pilots=16)"
    y, state = PhaseNoise()(z, 10.0, gen(3))
    assert state.h.shape == (4, 8) and y.shape == (4, 8)
    with pytest.raises(ValueError, match="gain per symbol with csi='estimated' needs"):
        PhaseNoise("estimated")(z, 10.0, gen(3))


def test_a_relabelled_fading_channel_keeps_its_blocks_pilots_and_record() -> None:
    """A subclass of ``rayleigh-fast`` relabelled for its results (a Rician channel, say)
    keeps the fast model's fading blocks of ``coherence`` symbols, its estimated CSI per block
    (not refused as per-symbol gains on a per-image model), and its coherence in ``repr`` and
    the results file."""
    from semcom.eval.sweep import results_document

    class Rician(Channel):
        def __init__(self, csi: str = "perfect") -> None:
            super().__init__("rayleigh-fast", csi=csi, coherence=4)
            self.name = "rician-k4"

    ours = Rician()
    assert ours.n_blocks(16) == 4 and ours.n_blocks(17) == 5
    assert repr(ours) == "Channel('rician-k4', csi='perfect', coherence=4)"
    doc = results_document([], "samples", 1, ours, {})
    assert doc["channel"] == {"name": "rician-k4", "csi": "perfect", "coherence": 4}
    z = torch.ones(2, 16, dtype=torch.complex64)
    _, state = ours(z, 10.0, gen(0))
    h = state.h.reshape(2, 4, 4)  # four blocks of four equal gains
    assert torch.equal(h, h[..., :1].expand(2, 4, 4)) and not torch.equal(h[:, 0], h[:, 1])
    _, est = Rician("estimated")(z, 10.0, gen(0))
    assert est.h_hat.shape == (2, 16)
    assert est.pilot_symbols == Channel("rayleigh-fast", "estimated", coherence=4).pilot_symbols(16)


class Rician(Channel):
    """Rician fading with K-factor ``k`` and the line of sight along the real axis:
    ``h = sqrt(K/(K+1)) + sqrt(1/(K+1)) CN(0, 1)`` (``E|h|^2 = 1``), on the blocks of the
    built-in fading ``model``; :meth:`gain_prior` gives the pilot estimate its prior."""

    def __init__(self, k: float, model: str = "rayleigh-slow", **kw) -> None:
        super().__init__(model, **kw)
        self.k, self.name = k, f"rician-k{k:g}"

    def gain_prior(self) -> tuple[complex, float]:
        return complex(math.sqrt(self.k / (self.k + 1))), 1.0 / (self.k + 1)

    def sample(self, z, snr_db, generator=None):
        state = super().sample(z, snr_db, generator)  # Rayleigh CN(0, 1), moved and scaled
        m, v = self.gain_prior()
        h = m + math.sqrt(v) * state.h
        return replace(state, h=h, h_hat=h)


def test_default_gain_prior_keeps_rayleigh_and_awgn_estimates_unchanged() -> None:
    """The gain prior defaults to Rayleigh's CN(0, 1) under fading and to none (least
    squares) on AWGN, and the Rayleigh estimate is bit for bit what it was before the hook
    existed: the values below were drawn by the code before it (seed 7, float64)."""
    assert Channel("rayleigh-slow").gain_prior() == (0j, 1.0)
    assert Channel("rayleigh-fast").gain_prior() == (0j, 1.0)
    assert Channel("awgn").gain_prior() is None
    z = torch.ones(3, 4, dtype=torch.complex128)
    snr = torch.tensor([-3.0, 0.0, 10.0])
    _, slow = Channel("rayleigh-slow", "estimated", pilots=2)(z, snr, gen(7))
    _, fast = Channel("rayleigh-fast", "estimated", coherence=2)(z, snr, gen(7))
    c = torch.complex128
    want_slow = torch.tensor(
        [-0.1783833208355045 - 0.27924988410244356j, -0.15575139644739217 + 0.56140559179985j,
         0.6476761647701843 - 0.6972129106061995j], dtype=c,
    )  # fmt: skip
    want_fast = torch.tensor(
        [0.008873931631547061 - 0.315661301903206j, 0.29571706177328677 + 0.5931308664511532j,
         0.30741499222216395 + 0.0867669953742949j, -0.7201038848886 - 0.378189665140697j,
         0.701847243018661 + 0.27122131783480713j, -0.37079186793039864 - 0.09275762230559459j],
        dtype=c,
    )  # fmt: skip
    assert torch.equal(slow.h_hat[:, 0], want_slow)
    assert torch.equal(fast.h_hat[:, ::2].flatten(), want_fast)
    f64 = torch.float64
    assert torch.equal(slow.h_err, torch.tensor([0.49940708711248194, 1 / 3, 1 / 21], dtype=f64))
    assert torch.equal(fast.h_err, torch.tensor([0.666139424583122, 0.5, 1 / 11], dtype=f64))


@pytest.mark.parametrize(
    ("model", "b", "n", "pilots", "snr_db"),
    [("rayleigh-fast", 1, 400_000, 1, 0.0), ("rayleigh-slow", 40_000, 10, 16, -5.0)],
)
def test_rician_prior_makes_the_estimate_unbiased_and_d_true(model, b, n, pilots, snr_db):
    """A Rician channel (K = 4) giving its prior through ``gain_prior``: the LMMSE estimate
    ``m + v/(v+s2) (h_ls - m)`` is unbiased, its error variance ``v s2/(v+s2)`` is the
    measured one, and the equaliser's ``d`` is the measured noise level of f_tilde wherever
    the estimate lies (per quintile of d, the signal coefficient of f in f_tilde is
    sqrt(1-d)). With Rayleigh's prior the estimate was biased by -m s2/(1+s2) (-0.45 / -0.15
    here) and the coefficient missed sqrt(1-d) by up to 0.07."""
    p = pack(torch.randn(b, n, generator=gen(41)))
    y, state = Rician(4.0, model, csi="estimated", pilots=pilots)(p.z, snr_db, gen(42))
    m, v = 0.8**0.5, 0.2
    s2 = 10 ** (-snr_db / 10) / pilots
    e = state.h_hat - state.h
    assert e.mean().abs().item() < 0.01, f"biased: E[h_hat - h] = {e.mean().item():.4f}"
    assert abs(e.abs().pow(2).mean().item() / (v * s2 / (v + s2)) - 1) < 0.05
    torch.testing.assert_close(state.h_err, torch.full((b,), v * s2 / (v + s2)))
    assert abs(state.h_hat.mean().item() - m) < 0.01
    eq = equalize(y, state)
    f = complex_to_real(p.z).flatten() * math.sqrt(2)
    d, ft = eq.d.expand(b, n).flatten(), eq.f_tilde.flatten()
    edges = torch.quantile(d[::7].double(), torch.linspace(0, 1, 6, dtype=torch.float64))
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        sel = (d >= lo) & (d <= hi)
        coef = (ft[sel] * f[sel]).mean() / f[sel].pow(2).mean()
        assert abs(coef.item() - (1 - d[sel]).sqrt().mean().item()) < 0.02, (lo, hi)
    u = (ft - (1 - d).sqrt() * f) / d.sqrt()  # unit noise, uncorrelated with f
    assert abs(u.var().item() - 1) < 0.03
    assert abs((u * f).mean().item()) < 0.01


def test_a_bad_gain_prior_is_refused() -> None:
    """A prior that is not (finite mean, finite variance > 0) is a ValueError naming the
    class, not NaN estimates."""

    class Bad(Channel):
        def __init__(self, prior) -> None:
            super().__init__("rayleigh-slow", csi="estimated")
            self.prior = prior

        def gain_prior(self):
            return self.prior

    z = torch.ones(2, 4, dtype=torch.complex64)
    for prior in [(0.5, 0.0), (0.5, -1.0), (math.nan, 1.0), (complex(0.5, math.nan), 1.0),
                  (0.0, math.inf), "rician", (1.0,), 0.5, (None, 1.0)]:  # fmt: skip
        with pytest.raises(ValueError, match=r"Bad\.gain_prior\(\)"):
            Bad(prior)(z, 10.0, gen(0))
    _, state = Bad((0.6 + 0.2j, 0.5))(z, 10.0, gen(0))  # a complex mean is fine
    assert torch.isfinite(state.h_hat).all()


# ------------------------------------------------------------- properties (hypothesis)
_FLOATS = st.sampled_from([torch.float32, torch.float64])


@settings(max_examples=40, deadline=None)
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    half=st.integers(1, 9),
    dtype=_FLOATS,
    seed=st.integers(0, 2**31 - 1),
)
def test_real_complex_packing_round_trips_for_any_even_length(lead, half, dtype, seed):
    """``c_k = v_k + j v_{k+L/2}`` for any leading shape, even L and dtype; both ways exact."""
    v = torch.randn(*lead, 2 * half, generator=gen(seed), dtype=dtype)
    c = real_to_complex(v)
    assert c.shape == (*lead, half) and c.real.dtype == dtype
    assert torch.equal(c.real, v[..., :half]) and torch.equal(c.imag, v[..., half:])
    assert torch.equal(complex_to_real(c), v)
    assert torch.equal(real_to_complex(complex_to_real(c)), c)


@settings(max_examples=40, deadline=None)
@given(
    log_scales=st.lists(st.floats(-30.0, 30.0), min_size=1, max_size=4),
    n=st.integers(1, 40),
    dtype=_FLOATS,
    seed=st.integers(0, 2**31 - 1),
)
@example(log_scales=[-13.0], n=4, dtype=torch.float64, seed=0)  # was sent at power ~0.01
@example(log_scales=[20.0], n=1, dtype=torch.float32, seed=0)  # was all-zero symbols
def test_pack_gives_unit_energy_per_image_at_any_scale(log_scales, n, dtype, seed):
    """``E|z|^2 = 1`` exactly for every image, whatever its scale (1e-30 .. 1e30, in float32
    too) and whatever the rest of the batch holds; unpack restores the latent. The RMS was
    floored at 1e-12 (a latent of RMS 1e-13 was sent at power 0.01) and its square overflowed
    float32 above ~1e19 (all-zero symbols, NaN latent back)."""
    b = len(log_scales)
    scales = torch.tensor([10.0**s for s in log_scales], dtype=torch.float64).view(b, 1)
    lat = (torch.randn(b, n, generator=gen(seed), dtype=torch.float64) * scales).to(dtype)
    p = pack(lat)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    power = p.z.abs().pow(2).mean(dim=-1).double()
    torch.testing.assert_close(power, torch.ones(b, dtype=torch.float64), atol=tol, rtol=0)
    for i in range(b):  # per image, never per batch
        assert torch.equal(pack(lat[i : i + 1]).z, p.z[i : i + 1])
    back = unpack(symbols_to_unit_real(p.z), p)
    torch.testing.assert_close(back, lat, rtol=10 * tol, atol=0)


def _normalize_power_both_ways(v: torch.Tensor):
    """``normalize_power(v)`` without autograd and with it (its two code paths), and the
    gradient of ``sum(w * f) + sum(rms)`` of the latter (``w`` fixed, seeded)."""
    with torch.no_grad():
        f0, rms0 = normalize_power(v)
    x = v.clone().requires_grad_()
    f1, rms1 = normalize_power(x)
    w = torch.randn(v.shape, generator=gen(7), dtype=torch.float64).to(v.dtype)
    ((f1 * w).sum() + rms1.sum()).backward()
    return (f0, rms0), (f1.detach(), rms1.detach()), x.grad


@settings(max_examples=40, deadline=None)
@given(
    log_scales=st.lists(st.floats(-3.0, 3.0), min_size=1, max_size=4),
    n=st.integers(1, 300),
    dtype=_FLOATS,
    seed=st.integers(0, 2**31 - 1),
)
def test_normalize_power_is_the_plain_formula_bit_for_bit_at_ordinary_scales(
    log_scales, n, dtype, seed
):
    """Where ``v^2`` neither overflows nor underflows, the power-of-two prescale changes no
    bit: ``f`` and ``rms`` are those of ``rms = sqrt(mean(v^2)), f = v / rms``, with and
    without autograd, and so is the gradient."""
    b = len(log_scales)
    scales = torch.tensor([10.0**s for s in log_scales], dtype=torch.float64).view(b, 1)
    v = (torch.randn(b, n, generator=gen(seed), dtype=torch.float64) * scales).to(dtype)
    plain_rms = v.pow(2).mean(dim=-1).sqrt()
    plain_f = v / plain_rms.unsqueeze(-1)
    no_grad, with_grad, grad = _normalize_power_both_ways(v)
    for f, rms in (no_grad, with_grad):
        assert torch.equal(f, plain_f) and torch.equal(rms, plain_rms)
    x = v.clone().requires_grad_()
    w = torch.randn(v.shape, generator=gen(7), dtype=torch.float64).to(dtype)
    rms = x.pow(2).mean(dim=-1).sqrt()
    ((x / rms.unsqueeze(-1) * w).sum() + rms.sum()).backward()
    tol = 1e-5 if dtype == torch.float32 else 1e-12  # other operations: rounding only
    torch.testing.assert_close(grad, x.grad, rtol=0, atol=tol * x.grad.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_power_at_extreme_scales_zero_and_nan_rows(dtype):
    """Rows of RMS 1e-30 .. 1e30 (float32: 1e-13 .. 1e20, past ``v^2``'s range) come out at
    unit power beside zero and NaN rows, each row as alone, the same bits with and without
    autograd, finite gradients for the rows of RMS > 0."""
    exps = range(-30, 31, 5) if dtype == torch.float64 else (-13, -6, 0, 6, 13, 20)
    rows = [
        torch.randn(1, 64, generator=gen(i), dtype=torch.float64) * 10.0**x
        for i, x in enumerate(exps)
    ]
    v = torch.cat([*rows, torch.zeros(1, 64, dtype=torch.float64), torch.full((1, 64), math.nan)])
    v = v.to(dtype)
    (f0, rms0), (f1, rms1), grad = _normalize_power_both_ways(v)
    assert torch.equal(f0[:-1], f1[:-1]) and torch.equal(rms0[:-1], rms1[:-1])
    k = len(exps)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    power = f0[:k].double().pow(2).mean(dim=-1)
    torch.testing.assert_close(power, torch.ones(k, dtype=torch.float64), atol=tol, rtol=0)
    back = rms0[:k].double().unsqueeze(-1) * f0[:k].double()  # f * rms = v
    torch.testing.assert_close(back, v[:k].double(), rtol=10 * tol, atol=0)
    assert torch.equal(f0[k], torch.zeros_like(f0[k])) and rms0[k] == 0  # a zero row stays 0
    assert f0[k + 1].isnan().all() and rms0[k + 1].isnan() and f1[k + 1].isnan().all()
    assert grad[:k].isfinite().all()
    for i in range(len(v)):  # per row, never per batch
        fi, ri = normalize_power(v[i : i + 1])
        assert torch.equal(fi, f0[i : i + 1]) or fi.isnan().all()
        assert torch.equal(ri, rms0[i : i + 1]) or ri.isnan().all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalize_power_scales_by_the_largest_magnitude_of_either_sign(dtype):
    """A row whose largest magnitude is negative (its largest value small) is scaled by that
    magnitude, not by its largest value (whose ``v^2`` then overflows): unit power at the
    edge of the dtype's range too."""
    big = 1e20 if dtype == torch.float32 else 1e300
    v = torch.tensor([[-big, 1.0, 2.0, -0.5 * big]], dtype=dtype)
    f, rms = normalize_power(v)
    assert float(f.double().pow(2).mean()) == pytest.approx(1.0, rel=1e-5)
    assert float(rms) == pytest.approx(big * math.sqrt(1.25 / 4), rel=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    latent_shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    hw=st.tuples(st.integers(1, 64), st.integers(1, 64)),
    channels=st.sampled_from([1, 3]),
    pilots=st.integers(0, 40),
    side=st.sampled_from([0, SCALAR_SIDE_SYMBOLS]),
)
def test_cbr_counts_every_channel_use(latent_shape, hw, channels, pilots, side):
    """Data symbols are ``ceil(L/2)``, as many as :func:`pack` sends; the CBR is (data +
    pilots + side) over the real source values, and its printed fraction parses back."""
    r = cbr_report(tuple(latent_shape), hw, pilots, side, channels)
    n_real = math.prod(latent_shape)
    assert r.data_symbols == math.ceil(n_real / 2) == pack(torch.ones(1, *latent_shape)).n_symbols
    assert r.channel_uses == r.data_symbols + pilots + side
    assert r.source_values == channels * hw[0] * hw[1]
    assert r.cbr == r.channel_uses / r.source_values
    text = format_cbr(r.cbr)
    if "/" in text and r.cbr <= 64:
        assert parse_cbr(text) == pytest.approx(r.cbr, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(num=st.integers(1, 64_000), den=st.integers(1, 1000))
def test_cbr_fractions_print_and_parse_exactly(num, den):
    """A CBR ``p/q`` with ``q <= 1000`` prints as its reduced fraction and parses back to the
    same float."""
    from fractions import Fraction

    fr = Fraction(num, den)
    if fr > 64:
        return
    assert format_cbr(num / den) == f"{fr.numerator}/{fr.denominator}"
    assert parse_cbr(format_cbr(num / den)) == num / den


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(["awgn", "rayleigh-slow", "rayleigh-fast"]),
    pilots=st.integers(1, 20),
    coherence=st.integers(1, 12),
    n_symbols=st.integers(0, 500),
)
def test_pilots_are_charged_once_per_fading_block(model, pilots, coherence, n_symbols):
    """Estimated CSI costs ``pilots`` per coherence block (``ceil(M / coherence)`` blocks under
    fast fading, one per image otherwise); perfect CSI and an empty transmission cost none."""
    coh = coherence if model == "rayleigh-fast" else 1
    est = Channel(model, csi="estimated", pilots=pilots, coherence=coh)
    blocks = math.ceil(n_symbols / coh) if model == "rayleigh-fast" else 1
    assert est.pilot_symbols(n_symbols) == (pilots * blocks if n_symbols > 0 else 0)
    assert Channel(model, coherence=coh).pilot_symbols(n_symbols) == 0


def _unit_phase(shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Complex numbers of modulus 1 and random phase, complex128."""
    return torch.polar(
        torch.ones(shape, dtype=torch.float64),
        6.3 * torch.rand(shape, generator=g, dtype=torch.float64),
    )


@settings(max_examples=60, deadline=None)
@given(
    b=st.integers(1, 3),
    m=st.integers(1, 12),
    per_symbol=st.booleans(),
    log_gain=st.floats(-9.0, 2.0),
    snr_db=st.floats(-30.0, 40.0) | st.just(math.inf),
    with_err=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_equalised_latent_is_sqrt_1_minus_d_f_plus_sqrt_d_n(
    b, m, per_symbol, log_gain, snr_db, with_err, seed
):
    """For any gains (any phase, |h| from 1e-9 to 100: deep fades included), noise power (N0 = 0
    too) and CSI error, the equaliser's output is exactly ``sqrt(1-d) f + (noise)`` whatever f
    is, the noise's variance per real element is exactly ``d``, ``d = (N0 + h_err) / (|h_hat|^2
    + N0 + h_err) = 1 / (1 + SNR_eq)`` in [0, 1] (1 and a zero output for a deep fade), and d
    grows with N0. Deterministic: the symbols and the noise are given, not drawn."""
    from semcom.channels import DEEP_FADE

    g = gen(seed)
    shape = (b, m) if per_symbol else (b, 1)
    mag = 10.0 ** (log_gain * torch.rand(shape, generator=g, dtype=torch.float64))
    h = mag * _unit_phase(shape, g)
    no = torch.full((b,), 10.0 ** (-snr_db / 10.0), dtype=torch.float64)
    err = torch.rand(b, generator=g, dtype=torch.float64) * 0.5 if with_err else None
    state = ChannelState(h=h, no=no, h_hat=h, h_err=err)
    noise = no + (err if err is not None else 0.0)  # what counts as noise per symbol
    gain = h.abs().pow(2).expand(b, m)
    fade = gain < DEEP_FADE
    d_want = torch.where(fade, 1.0, noise[:, None] / (gain + noise[:, None]))
    z1 = pack(torch.randn(b, 2 * m, generator=g, dtype=torch.float64)).z
    z2 = pack(torch.randn(b, 2 * m, generator=g, dtype=torch.float64)).z
    n = 0.3 * _unit_phase((b, m), g) * torch.rand(b, m, generator=g, dtype=torch.float64)
    eq1, eq2 = equalize(h * z1 + n, state), equalize(h * z2 + n, state)
    d = eq1.d.expand(b, 2 * m)
    torch.testing.assert_close(d, torch.cat([d_want, d_want], -1), rtol=1e-12, atol=0)
    assert bool(((d >= 0) & (d <= 1)).all())
    # signal part sqrt(1-d) f exactly, whatever f (the same residual for two latents)
    r1 = eq1.f_tilde - (1 - d).sqrt() * symbols_to_unit_real(z1)
    r2 = eq2.f_tilde - (1 - d).sqrt() * symbols_to_unit_real(z2)
    torch.testing.assert_close(r1, r2, rtol=0, atol=1e-9)
    # noise gain: a unit-modulus received symbol comes out with squared modulus d / noise
    unit = equalize(_unit_phase((b, m), g), state).f_tilde
    out2 = (unit[:, :m].pow(2) + unit[:, m:].pow(2)) / 2  # |w|^2 per symbol
    want = torch.where(fade, 0.0, d_want / noise[:, None].clamp_min(1e-300))
    if snr_db < math.inf or with_err:
        torch.testing.assert_close(out2, want, rtol=1e-9, atol=0)
    assert bool((eq1.f_tilde[torch.cat([fade, fade], -1)] == 0).all())
    # monotone in the SNR: 3 dB less SNR never lowers d
    worse = equalize(h * z1 + n, replace(state, no=2 * no + 1e-3))
    assert bool((worse.d >= eq1.d).all())


@settings(max_examples=100, deadline=None)
@given(snr_db=st.floats(-150.0, 150.0), d=st.floats(0.0, 1.0))
def test_db_linear_and_level_round_trips(snr_db, d):
    """``N0 = 10^(-SNR/10)`` is the inverse of the linear SNR; dB -> linear -> dB and
    level -> SNR -> level (``d = 1/(1+k)``) round-trip."""
    from semcom.channels.models import snr_to_no
    from semcom.diffusion import db_to_linear, level_from_snr, snr_from_level

    k = float(db_to_linear(snr_db))
    assert float(snr_to_no(snr_db)) * k == pytest.approx(1.0, rel=1e-12)
    assert 10 * math.log10(k) == pytest.approx(snr_db, abs=1e-9)
    assert float(level_from_snr(snr_from_level(d))) == pytest.approx(d, rel=1e-12, abs=1e-300)
    assert float(snr_from_level(level_from_snr(k))) == pytest.approx(k, rel=1e-9)
    assert float(level_from_snr(k)) == pytest.approx(1 / (1 + k), rel=1e-15)


# the fixture is the codec class: each example builds its own instance
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    model=st.sampled_from(["awgn", "rayleigh-slow", "rayleigh-fast"]),
    pilots=st.none() | st.integers(1, 8),
    coherence=st.integers(1, 7),
    needs_scale=st.booleans(),
)
def test_link_charges_what_it_sends_for_any_image_and_channel(
    identity_codec, hw, model, pilots, coherence, needs_scale
):
    """A transmission's CBR is the link's budget for its image size and channel: ``ceil(3HW/2)``
    data symbols, the channel's pilots for them (per coherence block under fast fading) and the
    side information, over 3HW source values."""
    codec = identity_codec()
    codec.needs_scale = needs_scale
    coh = coherence if model == "rayleigh-fast" else 1
    csi = "perfect" if pilots is None else "estimated"
    channel = Channel(model, csi=csi, pilots=pilots, coherence=coh)
    link = AnalogLink(codec)
    tx = link.transmit(torch.rand(1, 3, *hw, generator=gen(0)), channel, 10.0, gen(1))
    data = math.ceil(3 * hw[0] * hw[1] / 2)
    blocks = math.ceil(data / coh)
    want_pilots = 0 if pilots is None else pilots * (blocks if model == "rayleigh-fast" else 1)
    side = SCALAR_SIDE_SYMBOLS if needs_scale else 0
    assert tx.cbr == link.cbr(*hw, channel)
    assert (tx.cbr.data_symbols, tx.cbr.pilot_symbols, tx.cbr.side_symbols) == (
        data,
        want_pilots,
        side,
    )
    assert tx.cbr.cbr == (data + want_pilots + side) / (3 * hw[0] * hw[1])


def test_first_channel_keeps_torch_global_random_state():
    """Importing Sionna (on the first channel use, in a fresh process) reseeded torch's default
    generator at random: a ``torch.manual_seed`` before it was undone (a training run's saved
    RNG state differed from run to run). The global stream now runs on as seeded."""
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from semcom.channels import Channel, pack\n"
        "torch.manual_seed(0)\n"
        "torch.rand(3)\n"
        "z = pack(torch.randn(1, 8, generator=torch.Generator().manual_seed(1))).z\n"
        "Channel('awgn')(z, 10.0, torch.Generator().manual_seed(2))\n"
        "print(torch.initial_seed(), *torch.rand(2).tolist())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()
    torch.manual_seed(0)
    expected = torch.rand(5)[3:].tolist()
    assert out[0] == "0" and [float(x) for x in out[1:]] == expected


@pytest.mark.parametrize("name", ["awgn", "rayleigh-slow", "rayleigh-fast"])
def test_channel_without_a_generator_draws_from_torch_global_generator(name):
    """Without a generator the channel draws from torch's default generator, as ``torch.randn``
    does: ``torch.manual_seed`` makes the realisation repeat (a fresh randomly seeded generator
    made every call differ whatever the seed), and the draws advance the global stream."""
    z = pack(torch.randn(2, 64, generator=torch.Generator().manual_seed(1))).z
    ch = Channel(name, csi="estimated") if name != "awgn" else Channel(name)
    torch.manual_seed(3)
    y1, s1 = ch(z, 0.0)
    after = torch.rand(1)
    torch.manual_seed(3)
    y2, s2 = ch(z, 0.0)
    assert torch.equal(y1, y2) and torch.equal(s1.h, s2.h) and torch.equal(s1.h_hat, s2.h_hat)
    assert torch.equal(torch.rand(1), after)
    torch.manual_seed(3)
    assert not torch.equal(torch.rand(1), after)  # the channel consumed the global stream
    y3, _ = ch(z, 0.0)
    assert not torch.equal(y3, y1)
