"""Diffusion schedules, SNR -> step matching, samplers and the receiver (docs/math.md §1-§3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from semcom.channels import snr_to_no
from semcom.diffusion import (
    DDMSchedule,
    DDPMSchedule,
    DiffusionReceiver,
    SigmoidSchedule,
    continuous_grid,
    db_to_linear,
    ddim_discrete,
    ddim_sample,
    ddim_update,
    ddm_grid,
    ddm_sample,
    ddm_t_from_noise_ratio,
    ddm_t_from_snr,
    ddpm_grid,
    diffusion_receive,
    fast_fading_sample,
    inject_noise,
    level_from_snr,
    match,
    match_continuous,
    match_ddm,
    match_vp,
    quantile_grid,
    snr_from_level,
    target_level,
    vp_closed_form_t,
    waterfill_sample,
)

F64 = torch.float64
LINEAR = DDPMSchedule("linear", 1000, 1e-4, 0.02)
SIG = SigmoidSchedule(0.0, 3.0, 0.7)
RULES = ["continuous", "ddm", "vp"]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def view(level: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return level.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def gaussian_mmse(p0: float):
    """Posterior-mean denoiser for x0 ~ N(0, p0 I) in the VP convention."""

    def den(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        v = view(level, x)
        return (1 - v).sqrt() * p0 / ((1 - v) * p0 + v) * x

    return den


class Oracle:
    """Perfect denoiser: returns the true x0 and records every call."""

    def __init__(self, x0: torch.Tensor):
        self.x0 = x0
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        assert level.shape == (x.shape[0],)
        assert torch.isfinite(level).all() and (level >= 0).all() and (level <= 1).all()
        self.calls.append((x.clone(), level.clone()))
        return self.x0.clone()


def received(b, shape, d, seed, dtype=F64):
    """Unit-power f and f_tilde = sqrt(1-d) f + sqrt(d) n."""
    g = gen(seed)
    f = torch.randn(b, *shape, generator=g, dtype=dtype)
    f = f / f.pow(2).mean(dim=tuple(range(1, f.dim())), keepdim=True).sqrt()
    n = torch.randn(b, *shape, generator=g, dtype=dtype)
    d = torch.as_tensor(d, dtype=dtype)
    return f, n, (1 - d).sqrt() * f + d.sqrt() * n


# ============================================================================ schedules
@settings(max_examples=200, deadline=None)
@given(t=st.floats(0.0, 1.0), v=st.floats(0.0, 1.0))
def test_sigmoid_inverse_roundtrip(t, v):
    assert abs(SIG.S_inv(SIG.S(t)).item() - t) < 1e-9
    assert abs(SIG.S(SIG.S_inv(v)).item() - v) < 1e-9


@settings(max_examples=30, deadline=None)
@given(start=st.floats(-3.0, 1.0), width=st.floats(0.5, 6.0), tau=st.floats(0.2, 2.0))
@example(start=1.0, width=6.0, tau=0.203125)  # end/tau ~ 34.5: sig(x) rounded to 1 at the top
def test_sigmoid_general_params(start, width, tau):
    s = SigmoidSchedule(start, start + width, tau)
    t = torch.linspace(0, 1, 257, dtype=F64)
    S = s.S(t)
    assert S[0].item() == pytest.approx(0.0, abs=1e-12)
    assert S[-1].item() == pytest.approx(1.0, abs=1e-12)
    assert (S.diff() > 0).all()
    # S_inv inverts S wherever S still resolves t in float64; for steep schedules
    # (end/tau ~ 30) S rounds to 1.0 on the last stretch and t cannot be recovered there,
    # but S(S_inv(S)) = S holds everywhere
    assert torch.allclose(s.S(s.S_inv(S)), S, rtol=0, atol=1e-12)
    ok = (S > 1e-6) & (1 - S > 1e-6)
    assert torch.allclose(s.S_inv(S)[ok], t[ok], atol=1e-8)
    assert s.S_inv(S)[0] == 0 and s.S_inv(S)[-1] == 1


def test_sigmoid_definition_and_clamping():
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    t = 0.37
    ref = (sig(t * 3 / 0.7) - sig(0)) / (sig(3 / 0.7) - sig(0))
    assert SIG.S(t).item() == pytest.approx(ref, rel=1e-14)
    out = SIG.S(torch.tensor([-1.0, 2.0, math.inf, -math.inf], dtype=F64))
    assert out.tolist() == [0.0, 1.0, 1.0, 0.0]
    inv = SIG.S_inv(torch.tensor([-0.5, 1.5, 0.0, 1.0], dtype=F64))
    assert inv.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert SIG.S(torch.tensor(0.5, dtype=torch.float32)).dtype == torch.float32


def test_ddpm_linear_reference_values():
    # independent reference: plain Python product
    T, b1, bT = 1000, 1e-4, 0.02
    ab = 1.0
    for t in range(1, T + 1):
        ab *= 1 - (b1 + (t - 1) * (bT - b1) / (T - 1))
        if t == 2:
            ab2 = ab
    assert LINEAR.alpha_bar(0).item() == 1.0
    assert LINEAR.alpha_bar(1).item() == pytest.approx(1 - 1e-4, rel=1e-15)
    assert LINEAR.alpha_bar(2).item() == pytest.approx(ab2, rel=1e-14)
    assert LINEAR.alpha_bar(T).item() == pytest.approx(ab, rel=1e-12)
    assert LINEAR.alpha_bar(T).item() == pytest.approx(4.0358e-5, rel=1e-4)
    lam_db = LINEAR.log_snrs * 10 / math.log(10)
    assert lam_db[1].item() == pytest.approx(40.0, abs=0.05)
    assert lam_db[-1].item() == pytest.approx(-43.9, abs=0.05)
    assert (LINEAR.log_snrs.diff() < 0).all()
    assert torch.equal(LINEAR.level(torch.tensor([0, 1, T])), 1 - LINEAR.alpha_bars[[0, 1, T]])
    # out-of-domain indices clamp
    assert LINEAR.alpha_bar(-5).item() == 1.0
    assert LINEAR.alpha_bar(5000).item() == LINEAR.alpha_bar(T).item()


def test_ddpm_cosine_properties():
    T, s = 1000, 0.008
    c = DDPMSchedule("cosine", T)
    ab = c.alpha_bars
    assert ab[0].item() == 1.0
    assert (ab.diff() < 0).all() and (ab > 0).all()
    assert (c.betas <= 0.999 + 1e-15).all() and (c.betas > 0).all()
    t = torch.arange(T + 1, dtype=F64)
    f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    # identical to f(t)/f(0) wherever the beta clip did not bite
    unclipped = int((c.betas < 0.999).nonzero().max()) + 1
    assert unclipped > 990
    assert torch.allclose(ab[:unclipped], (f / f[0])[:unclipped], rtol=1e-10, atol=1e-15)
    assert torch.isfinite(c.log_snrs[1:]).all() and (c.log_snrs.diff() < 0).all()
    assert c.level(T // 2).item() == pytest.approx(1 - f[T // 2].item() / f[0].item(), rel=1e-10)


def test_ddpm_index_and_timestep_from_level():
    idx = torch.tensor([0, 1, 2, 17, 500, 999, 1000])
    v = LINEAR.level(idx)
    assert torch.equal(LINEAR.index_from_level(v), idx)
    assert torch.equal(LINEAR.index_from_level(v, mode="ceil"), idx)
    assert torch.allclose(LINEAR.timestep_from_level(v), idx.to(F64), atol=1e-9)
    vv = torch.linspace(0, 1, 4001, dtype=F64)
    tt = LINEAR.timestep_from_level(vv)
    assert (tt.diff() >= 0).all() and tt[0] == 0 and tt[-1] == 1000
    ceil = LINEAR.index_from_level(vv, mode="ceil")
    assert ((LINEAR.level(ceil) >= vv) | (ceil == 1000)).all()
    assert (LINEAR.level((ceil - 1).clamp(min=0))[ceil > 0] < vv[ceil > 0]).all()


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_an_index_conditioned_network_reads_its_step_back_from_a_float32_level(kind):
    """The samplers hand a network its level in ``x_t``'s dtype (float32): ``index_from_level``
    and ``timestep_from_level`` give back the table's step (``level(1) = 1e-4`` rounds below
    the float64 table's value, which the nearest rule read as step 0; ``ceil`` read about
    every other step as the next one)."""
    sched = DDPMSchedule(kind)
    t = torch.arange(sched.T + 1)
    v = sched.level(t).float()
    assert torch.equal(sched.index_from_level(v), t)
    assert torch.equal(sched.index_from_level(v, mode="ceil"), t)
    torch.testing.assert_close(sched.timestep_from_level(v), t.to(F64), rtol=0, atol=1e-9)
    seen = []

    def net(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:  # an adapter's view
        assert level.dtype == torch.float32
        seen.append(sched.index_from_level(level).tolist())
        return torch.zeros_like(x)

    ddim_discrete(torch.randn(2, 3, 4, 4), torch.tensor([10, 10]), net, sched, steps=10)
    assert seen == [[j, j] for j in range(10, 0, -1)]
    # half precision cannot tell the top steps apart (hundreds round to 1.0): it is read
    # against the exact table, so v = 1 is still T and half levels land where float64 do
    for dt in (torch.float16, torch.bfloat16):
        one = torch.tensor([1.0], dtype=dt)
        assert sched.index_from_level(one, mode="ceil").item() == sched.T
        assert sched.index_from_level(one).item() == sched.T
        vh = sched.level(t).to(dt)
        assert torch.equal(sched.index_from_level(vh), sched.index_from_level(vh.double()))


@settings(max_examples=100, deadline=None)
@given(v=st.floats(0.0, 1.0), t=st.floats(0.0, 1.0))
def test_ddm_vp_mapping(v, t):
    ddm = DDMSchedule()
    assert abs(ddm.level(ddm.t_from_level(v)).item() - v) < 1e-12
    assert abs(ddm.t_from_level(ddm.level(t)).item() - t) < 1e-9
    c = ddm.scale(t).item()
    # x_t / c_t is VP: signal^2 + noise^2 = 1, noise^2 = level
    assert ((1 - t) / c) ** 2 + (math.sqrt(t) / c) ** 2 == pytest.approx(1.0, abs=1e-12)
    assert (math.sqrt(t) / c) ** 2 == pytest.approx(ddm.level(t).item(), abs=1e-12)


# ============================================================================= matching
def test_snr_level_helpers():
    d = torch.tensor([0.0, 0.5, 1.0, 0.2], dtype=F64)
    k = snr_from_level(d)
    assert k.tolist() == [math.inf, 1.0, 0.0, 4.0]
    assert torch.allclose(level_from_snr(k), d)
    out = snr_from_level(torch.tensor([1e-300, 2.0, -1.0], dtype=F64))  # clamped to [0, 1]
    assert out[0] > 1e299 and out[1] == 0 and out[2] == math.inf
    assert db_to_linear(10.0).item() == pytest.approx(10.0)


@settings(max_examples=100, deadline=None)
@given(
    a_db=st.floats(-40.0, 39.0),
    frac=st.floats(0.0, 1.0),
    p0=st.floats(0.25, 4.0),
)
def test_matching_monotone_in_snr(a_db, frac, p0):
    # pairs inside +-46 dB of P0, i.e. inside the unclamped range (level_eps = 1e-5)
    lo, hi = db_to_linear(a_db), db_to_linear(a_db + 1e-3 + frac * (40.0 - a_db - 1e-3))
    for rule in ("continuous", "ddm"):
        m_lo, m_hi = match(lo, rule, p0=p0), match(hi, rule, p0=p0)
        assert m_hi.level < m_lo.level, rule
        assert m_hi.t < m_lo.t, rule
        assert not (m_lo.clamped or m_hi.clamped)
    assert match_vp(hi, LINEAR, p0).t <= match_vp(lo, LINEAR, p0).t


def test_matching_limits_and_consistency():
    k = db_to_linear(torch.linspace(-40, 40, 161, dtype=F64))
    p0 = 0.5
    v_star = p0 / (k + p0)
    mc, md = match_continuous(k, SIG, p0), match_ddm(k, p0)
    # paper B eq. 19 with general P0: S(m) = P0/(k+P0); DDM t* has the same VP level
    assert torch.allclose(SIG.S(mc.t), v_star, atol=1e-12)
    assert torch.allclose(md.level, v_star, atol=1e-12)
    assert torch.allclose(target_level(k, p0), v_star)
    mv = match_vp(k, LINEAR, p0)
    assert (mv.t.diff() <= 0).all() and (mc.t.diff() < 0).all() and (md.t.diff() < 0).all()
    assert match_vp(0.0, LINEAR).t.item() == 1000 and match_vp(math.inf, LINEAR).t.item() == 0
    assert match_ddm(0.0).t.item() == 1.0 and match_ddm(math.inf).t.item() == 0.0
    # P0 = 1: eq. 19 as printed, m = S^-1(1/(1+gamma))
    g = torch.tensor([0.1, 1.0, 10.0], dtype=F64)
    assert torch.allclose(match_continuous(g, SIG).t, SIG.S_inv(1 / (1 + g)), atol=1e-15)


@settings(max_examples=100, deadline=None)
@given(snr_db=st.floats(-40.0, 60.0), p0=st.floats(0.1, 10.0))
def test_ddm_closed_form_is_root(snr_db, p0):
    k = 10 ** (snr_db / 10)
    t = ddm_t_from_snr(k, p0).item()
    assert 0 < t < 1
    # root of P0 (1-t)^2 = k t (matching eq. 20), the minus root of the quadratic (23)
    assert abs(p0 * (1 - t) ** 2 - k * t) <= 1e-10 * max(p0, k * t)
    # numerical root by bisection of the strictly decreasing F(t) = P0(1-t)^2 - k t on [0, 1]
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if p0 * (1 - mid) ** 2 - k * mid > 0 else (lo, mid)
    assert t == pytest.approx(0.5 * (lo + hi), rel=1e-9, abs=1e-15)
    # plus root = 1/t- > 1 is the rejected one; first printed form agrees when stable
    if snr_db < 20:
        t_first = (2 * p0 + k - math.sqrt(k * k + 4 * k * p0)) / (2 * p0)
        assert t == pytest.approx(t_first, rel=1e-6)
    # Remark 2: with s^2 = sigma^2/P_s and k = P0/s^2 the result is independent of P0
    s2 = p0 / k
    assert ddm_t_from_noise_ratio(s2).item() == pytest.approx(t, rel=1e-9)


def test_ddm_third_party_variant_is_not_a_root():
    # the quoted (2s^2 + 1 - sqrt(1+4s^2)) / (4 s^2) tends to 1/2, not 1, as SNR -> 0
    s2 = 1e8
    wrong = (2 * s2 + 1 - math.sqrt(1 + 4 * s2)) / (4 * s2)
    assert wrong == pytest.approx(0.5, abs=1e-3)
    assert ddm_t_from_noise_ratio(s2).item() == pytest.approx(1.0, abs=1e-3)


def test_ddm_t_from_noise_ratio_limits():
    # s^2 -> inf (no signal) starts from pure noise, t* = 1; s^2 = 0 is clean; NaN is refused
    # as by the other matchers (it started from pure noise)
    t = ddm_t_from_noise_ratio(torch.tensor([math.inf, 0.0, 1e300], dtype=F64))
    assert t.tolist()[:2] == [1.0, 0.0] and t[2].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"^s2 holds NaN"):
        ddm_t_from_noise_ratio(torch.tensor([1.0, math.nan], dtype=F64))


def test_vp_discrete_matches_continuous_target():
    snr_db = torch.linspace(-30, 35, 261, dtype=F64)
    k = db_to_linear(snr_db)
    for p0 in (0.5, 1.0, 3.0):
        m = match_vp(k, LINEAR, p0)
        # brute-force argmin over the table (independent of the searchsorted implementation)
        lam = torch.log(k / p0)
        brute = (LINEAR.log_snrs[1:][None, :] - lam[:, None]).abs().argmin(1) + 1
        assert torch.equal(m.t, brute)
        # exact abar* = k/(k+P0) lies within one step of the discrete argmin
        t_cont = LINEAR.timestep_from_level(p0 / (k + p0))
        assert ((m.t - t_cont).abs() <= 1.0).all()
        assert torch.allclose(1 - m.level, LINEAR.alpha_bar(m.t))
        # the first-order closed form is within a few steps of the exact continuous step
        # (docs/math.md §1.1: <= 2.3 measured over -30..35 dB at P0 = 1), on k/P0 in -30..35 dB
        kp = db_to_linear(snr_db) * p0
        t_closed = vp_closed_form_t(kp, p0)
        t_exact = LINEAR.timestep_from_level(p0 / (kp + p0))
        assert ((t_closed - t_exact).abs() <= 2.4).all()
        assert ((t_closed - match_vp(kp, LINEAR, p0).t).abs() <= 3.0).all()
        # energy-matched alpha (P_y = 1): sqrt(abar P0 + 1 - abar)
        ab = LINEAR.alpha_bar(m.t)
        assert torch.allclose(m.alpha, (ab * p0 + 1 - ab).sqrt())


# ============================================================================ moment test
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(("p0", "pz", "h", "snr_db"), [(1.0, 1.0, 1.0, 5.0), (2.5, 0.3, 0.7, -3.0)])
def test_scaled_input_has_training_moments(rule, p0, pz, h, snr_db):
    """alpha*y vs x_t at the matched step: mean, energy, and the split between signal and
    noise (cross-moments with x0~ and n~), as docs/math.md §1 'Principle'."""
    n_el = 400_000
    g = gen(11)
    z = torch.randn(n_el, generator=g, dtype=F64) * math.sqrt(pz)
    p_s = h * pz
    sigma2 = p_s / 10 ** (snr_db / 10)
    noise = torch.randn(n_el, generator=g, dtype=F64) * math.sqrt(sigma2)
    y = math.sqrt(h) * z + noise
    p_y = y.pow(2).mean()
    k = max(p_y.item() - sigma2, 0.0) / sigma2  # assumption A2: estimated from P_y
    m = match(k, rule, LINEAR if rule == "vp" else None, p0=p0, p_y=p_y)
    ay = m.alpha * y
    x0t = math.sqrt(p0 / p_s) * math.sqrt(h) * z  # received signal at training power
    nt = noise / math.sqrt(sigma2)
    if rule == "ddm":
        t = m.t.item()
        c_sig, c_noise = 1 - t, math.sqrt(t)
    else:
        v = m.level.item()
        c_sig, c_noise = math.sqrt(1 - v), math.sqrt(v)
    energy = c_sig**2 * p0 + c_noise**2
    tol = 6 * math.sqrt(2 / n_el) * energy
    assert abs(ay.mean().item()) < 6 * math.sqrt(energy / n_el)
    assert ay.pow(2).mean().item() == pytest.approx(energy, abs=1e-9)  # alpha uses measured P_y
    split_tol = tol if rule != "vp" else 0.03 * energy  # integer step: half-step split error
    assert (ay * x0t).mean().item() == pytest.approx(c_sig * p0, abs=split_tol)
    assert (ay * nt).mean().item() == pytest.approx(c_noise, abs=split_tol)


# ====================================================================== oracle samplers
@settings(max_examples=25, deadline=None)
@given(
    steps=st.integers(1, 8),
    snr_db=st.lists(st.floats(-20.0, 30.0), min_size=1, max_size=3),
    p0=st.floats(0.2, 5.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_oracle_continuous_every_step_exact(steps, snr_db, p0, seed):
    b = len(snr_db)
    d = level_from_snr(db_to_linear(torch.tensor(snr_db, dtype=F64))).reshape(b, 1, 1, 1)
    f, n, ft = received(b, (2, 4, 4), d, seed)
    oracle = Oracle(math.sqrt(p0) * f)
    res = diffusion_receive(ft, d, oracle, p0=p0, rule="continuous", steps=steps)
    assert torch.allclose(res.f_hat, f, atol=1e-9)
    assert len(oracle.calls) == steps == res.info["network_calls"]
    # every network input is exactly the training variable at its level, same n throughout
    for x, lv in oracle.calls:
        v = view(lv, x)
        assert torch.allclose(x, (1 - v).sqrt() * math.sqrt(p0) * f + v.sqrt() * n, atol=1e-9)
    assert torch.allclose(oracle.calls[0][1], res.start.level)


@pytest.mark.parametrize("steps", [1, 2, 5, 50])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_oracle_receiver_recovers_latent(steps, rule, dtype):
    d = torch.tensor([0.5, 0.01, 0.9], dtype=dtype).reshape(3, 1, 1, 1)
    f, _, ft = received(3, (4, 8, 8), d, 3, dtype)
    p0 = 2.0
    res = diffusion_receive(ft, d, Oracle(math.sqrt(p0) * f), p0=p0, rule=rule, steps=steps)
    assert res.f_hat.dtype == dtype
    assert torch.allclose(res.f_hat, f, atol=1e-5)


def test_oracle_vp_discrete_and_ddm_every_step_exact():
    g = gen(5)
    x0 = torch.randn(2, 3, 8, 8, generator=g, dtype=F64) * 1.7
    eps = torch.randn(2, 3, 8, 8, generator=g, dtype=F64)
    # (t*, K, network calls): with K > t* round(j t*/K) repeats indices; the repeats are
    # no-ops and cost no call (t* = 2: levels at t = 2 and 1, t = 0 is clean)
    for t_star, steps, calls in (([731, 40], 7, 7), ([2, 2], 5, 2)):
        t_star = torch.tensor(t_star)
        v = view(LINEAR.level(t_star), x0)
        oracle = Oracle(x0)
        xt = (1 - v).sqrt() * x0 + v.sqrt() * eps
        out = ddim_discrete(xt, t_star, oracle, LINEAR, steps=steps)
        assert torch.allclose(out, x0, atol=1e-10) and len(oracle.calls) == calls
        for x, lv in oracle.calls:
            w = view(lv, x)
            assert torch.allclose(x, (1 - w).sqrt() * x0 + w.sqrt() * eps, atol=1e-10)
    # DDM form: denoiser sees x_t / c_t = sqrt(1-v) x0 + sqrt(v) eps
    ddm = DDMSchedule()
    t = torch.tensor([0.83, 0.2], dtype=F64)
    tv = view(t, x0)
    for stochastic in (False, True):
        oracle = Oracle(x0)
        xt = (1 - tv) * x0 + tv.sqrt() * eps
        out = ddm_sample(xt, t, oracle, steps=6, stochastic=stochastic, generator=gen(1))
        assert torch.allclose(out, x0, atol=1e-10)
        if not stochastic:
            for x, lv in oracle.calls:
                w = view(lv, x)
                assert torch.allclose(x, (1 - w).sqrt() * x0 + w.sqrt() * eps, atol=1e-10)
                assert torch.allclose(lv, ddm.level(ddm.t_from_level(lv)))


def test_ddm_stochastic_steps_keep_the_marginal_noise():
    """The stochastic DDM step draws fresh noise of the right size: with a perfect denoiser
    every intermediate state the network sees is sqrt(1-v) x0 + sqrt(v) n with n of unit
    variance (the final output, x0 itself, cannot tell)."""
    g = gen(21)
    x0 = torch.randn(1, 4, 64, 64, generator=g, dtype=F64)
    t = torch.tensor([0.8], dtype=F64)
    oracle = Oracle(x0)
    xt = (1 - t) * x0 + t.sqrt() * torch.randn(x0.shape, generator=g, dtype=F64)
    ddm_sample(xt, t, oracle, steps=5, stochastic=True, generator=gen(22))
    assert len(oracle.calls) == 5
    n = x0.numel()
    for x, lv in oracle.calls:
        w = view(lv, x)
        resid = (x - (1 - w).sqrt() * x0) / w.sqrt()
        assert abs(float(resid.var()) - 1.0) < 6 * math.sqrt(2 / n), float(resid.var())
        assert abs(float(resid.mean())) < 6 / math.sqrt(n)


def test_paper_b_sigmoid_schedule_is_the_default():
    """The receivers' default continuous schedule is paper B's g = 0, e = 3, tau = 0.7 (eq.
    17): its closed form, and a receiver without a schedule equals one given it explicitly."""
    s = SigmoidSchedule()
    assert (s.start, s.end, s.tau) == (0.0, 3.0, 0.7)
    t = torch.linspace(0, 1, 11, dtype=F64)
    closed = (torch.sigmoid(3 * t / 0.7) - 0.5) / (torch.sigmoid(torch.tensor(3 / 0.7)) - 0.5)
    assert torch.allclose(s.S(t), closed.to(F64), atol=1e-12)
    x = torch.randn(2, 3, 8, 8, generator=gen(23), dtype=F64)
    d = torch.tensor([0.3, 0.6], dtype=F64)

    def den(xx, lv):  # an arbitrary x0-predictor: the grid matters
        return torch.tanh(xx) * (1 - view(lv, xx))

    default = diffusion_receive(x, d, den, steps=3).f_hat
    explicit = diffusion_receive(x, d, den, steps=3, schedule=SIG).f_hat
    assert torch.equal(default, explicit)
    other = diffusion_receive(x, d, den, steps=3, schedule=SigmoidSchedule(0.0, 3.0, 0.5)).f_hat
    assert not torch.allclose(default, other)


def test_ddm_deterministic_equals_ddim_on_mapped_grid():
    """The DDM reverse step is DDIM in VP coordinates (same eps_hat), for any denoiser."""
    ddm = DDMSchedule()
    g = gen(9)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=F64)
    t = torch.tensor([0.7, 0.3], dtype=F64)

    def den(xx, lv):  # an arbitrary nonlinear x0-predictor
        return torch.tanh(xx) * (1 - view(lv, xx)) + 0.1

    out_ddm = ddm_sample(x, t, den, steps=5)
    grid = ddm.level(ddm_grid(t, 5))
    out_vp = ddim_sample(x / view(ddm.scale(t), x), grid, den)
    assert torch.allclose(out_ddm, out_vp, atol=1e-12)


def test_gaussian_mmse_one_step_equals_lmmse():
    """Units check: the matched, alpha-scaled input and an exact Gaussian posterior-mean
    denoiser with K = 1 reproduce the LMMSE estimate sqrt(1-d) f_tilde for any P0."""
    d = torch.tensor([0.05, 0.3, 0.8], dtype=F64).reshape(3, 1, 1, 1)
    _, _, ft = received(3, (2, 6, 6), d, 4)
    lmmse = (1 - d).sqrt() * ft
    for p0 in (0.3, 1.0, 4.0):
        for rule in ("continuous", "ddm"):
            out = diffusion_receive(ft, d, gaussian_mmse(p0), p0=p0, rule=rule).f_hat
            assert torch.allclose(out, lmmse, atol=1e-10), (p0, rule)
        out = diffusion_receive(ft, d, gaussian_mmse(p0), p0=p0, rule="vp").f_hat
        assert torch.allclose(out, lmmse, rtol=0.02, atol=1e-3)


# ========================================================================= water-filling
@settings(max_examples=20, deadline=None)
@given(bt=st.floats(0.05, 1.0), seed=st.integers(0, 2**31 - 1))
def test_waterfill_injection_equalises_noise(bt, seed):
    n_el = 40_000
    g = gen(seed)
    f0 = torch.randn(1, n_el, generator=g, dtype=F64)
    nu = torch.randn(1, n_el, generator=g, dtype=F64)
    b = torch.rand(1, n_el, generator=g, dtype=F64) * bt
    b[0, :100] = bt  # already at the level: untouched
    x = (1 - b).sqrt() * f0 + b.sqrt() * nu
    out = inject_noise(x, b, torch.tensor([bt], dtype=F64), g)
    assert torch.equal(out[0, :100], x[0, :100])
    r = (out - math.sqrt(1 - bt) * f0) / math.sqrt(bt)  # should be N(0, 1) per element
    tol = 6 * math.sqrt(2 / (n_el / 2))
    order = b[0].argsort()
    for half in (order[: n_el // 2], order[n_el // 2 :]):  # low-b and high-b elements alike
        assert r[0, half].pow(2).mean().item() == pytest.approx(1.0, abs=tol)
        assert abs(r[0, half].mean().item()) < 6 / math.sqrt(n_el / 2)
    # noise uncorrelated with the signal and with the original level
    assert abs((r * f0).mean().item()) < 6 / math.sqrt(n_el)
    assert abs(torch.corrcoef(torch.stack([r[0] ** 2, b[0]]))[0, 1].item()) < 6 / math.sqrt(n_el)


@pytest.mark.parametrize("variant", ["waterfill", "reference", "naive"])
@pytest.mark.parametrize("steps", [1, 3, 12])
def test_waterfill_oracle_exact(variant, steps):
    g = gen(21)
    x0 = torch.randn(2, 4, 16, 16, generator=g, dtype=F64)
    nu = torch.randn(2, 4, 16, 16, generator=g, dtype=F64)
    b = torch.rand(2, 4, 16, 16, generator=g, dtype=F64) * torch.tensor([0.9, 0.3]).view(2, 1, 1, 1)
    x = (1 - b).sqrt() * x0 + b.sqrt() * nu
    oracle = Oracle(x0)
    out = fast_fading_sample(x, b, oracle, steps=steps, generator=gen(2), variant=variant)
    assert torch.allclose(out, x0, atol=1e-10)
    assert len(oracle.calls) == steps
    if variant == "naive":
        return
    # every network input g has uniform noise variance B_t (statistical, 1024 elements/image)
    for gin, lv in oracle.calls:
        v = view(lv, gin)
        r = (gin - (1 - v).sqrt() * x0) / v.sqrt()
        var = r.pow(2).flatten(1).mean(1)
        assert torch.allclose(var, torch.ones(2, dtype=F64), atol=6 * math.sqrt(2 / 1024))


@pytest.mark.parametrize("variant", ["waterfill", "reference"])
def test_waterfill_feeds_dead_elements_as_noise(variant):
    """Elements with no signal (level 1, e.g. |h| = 0) are 0 after the equaliser; the sampler's
    model wants pure noise there: the network sees unit noise at them, not zeros."""
    g = gen(22)
    x0 = torch.randn(2, 4, 32, 32, generator=g, dtype=F64)
    nu = torch.randn(2, 4, 32, 32, generator=g, dtype=F64)
    b = torch.rand(2, 4, 32, 32, generator=g, dtype=F64) * 0.6
    dead = torch.rand(b.shape, generator=g) < 0.2
    b[dead] = 1.0
    x = torch.where(dead, 0.0, (1 - b).sqrt() * x0 + b.sqrt() * nu)
    oracle = Oracle(x0)
    out = fast_fading_sample(x, b, oracle, steps=4, generator=gen(2), variant=variant)
    assert torch.allclose(out, x0, atol=1e-10)
    gin, lv = oracle.calls[0]  # the first input is at level 1: pure noise everywhere
    assert torch.all(view(lv, gin) == 1.0)
    n_dead = int(dead.sum())
    assert gin[dead].pow(2).mean().item() == pytest.approx(1.0, abs=6 * math.sqrt(2 / n_dead))


def test_waterfill_invariant_mid_run():
    """Stop Alg. 3 half-way (levels[0] > 0): each element is at min(d_i, S(t_stop))."""
    g = gen(8)
    n = 60_000
    x0 = torch.randn(1, n, generator=g, dtype=F64)
    nu = torch.randn(1, n, generator=g, dtype=F64)
    d = torch.rand(1, n, generator=g, dtype=F64) * 0.8
    x = (1 - d).sqrt() * x0 + d.sqrt() * nu
    m = SIG.S_inv(d.max())
    grid = continuous_grid(m, 8, SIG)
    grid[-1] = d.max()
    stop = grid[4:]  # run steps 8..5, ending at level S(4m/8)
    level = stop[0].item()
    for variant in ("waterfill", "reference"):
        out = waterfill_sample(x, d, stop, Oracle(x0), gen(3), variant=variant)
        b = d.clamp(max=level)
        r = (out - (1 - b).sqrt() * x0) / b.sqrt()
        assert r.pow(2).mean().item() == pytest.approx(1.0, abs=6 * math.sqrt(2 / n))
        low = d < level  # untouched elements keep their own noise exactly
        assert torch.equal(out[low], x[low])
        if variant == "reference":  # DDIM from the own level keeps the own noise nu exactly
            assert torch.allclose(out, (1 - b).sqrt() * x0 + b.sqrt() * nu, atol=1e-10)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("variant", ["waterfill", "reference", "naive"])
@pytest.mark.parametrize("grid", ["time", "quantile"])
def test_receiver_per_element_oracle(rule, variant, grid):
    g = gen(31)
    shape = (2, 8, 32, 32)
    d = torch.rand(shape, generator=g, dtype=F64) * 0.7 + 0.01
    f, _, ft = received(2, shape[1:], d, 6)
    p0 = 4.0
    oracle = Oracle(math.sqrt(p0) * f)
    kw = dict(p0=p0, rule=rule, steps=4, fading=variant, generator=g, fading_grid=grid)
    if variant == "naive" and grid == "quantile":  # ran as naive: refused, as for the schemes
        with pytest.raises(ValueError, match=r"fading_grid='quantile' .* per-element samplers"):
            diffusion_receive(ft, d, oracle, **kw)
        with pytest.raises(ValueError, match=r"fading_grid='quantile'"):
            DiffusionReceiver(oracle, p0=p0, fading="naive", fading_grid="quantile")
        return
    res = diffusion_receive(ft, d, oracle, **kw)
    assert res.per_element == (variant != "naive")
    assert torch.allclose(res.f_hat, f, atol=1e-9)
    if variant == "naive":
        return
    # per-element alpha_i maps every element into the training distribution: after
    # water-filling each network input is sqrt(1-B_t) sqrt(P0) f + N(0, B_t) per element
    n_el = f[0].numel()
    for x, lv in oracle.calls:
        v = view(lv, x)
        r = ((x - (1 - v).sqrt() * math.sqrt(p0) * f) / v.sqrt()).flatten(1)
        assert torch.allclose(
            r.pow(2).mean(1), torch.ones(2, dtype=F64), atol=6 * (2 / n_el) ** 0.5
        )
        assert ((r * f.flatten(1)).mean(1).abs() < 6 / n_el**0.5).all()


def test_per_element_vp_reports_start_from_noise():
    """Per-element VP levels start at the smallest table step at or above the largest element
    level: when that is the top of the table the image starts from pure noise, and the report
    says so."""
    g = gen(32)
    d = torch.rand(2, 2, 8, 8, generator=g, dtype=F64) * 0.5 + 0.01
    d[0, 0, 0, 0] = 0.9999594  # between the table's last two levels: the ceiling is the top
    f, _, ft = received(2, d.shape[1:], d, 7)
    res = diffusion_receive(ft, d, Oracle(f), rule="vp", steps=2, generator=g, fading="waterfill")
    assert res.start.t.tolist()[0] == 1000
    assert res.start.start_from_noise.tolist() == [True, False]
    assert res.info["n_start_from_noise"] == 1


@settings(max_examples=30, deadline=None)
@given(
    steps=st.integers(1, 12),
    scale=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3),
    seed=st.integers(0, 2**31 - 1),
)
def test_quantile_grid_properties(steps, scale, seed):
    """0 at the end, the largest level at the start, monotone, ~j/K of the elements at or
    below level j (each step takes about 1/K of them)."""
    g = gen(seed)
    v = torch.rand(len(scale), 3, 10, 10, generator=g, dtype=F64) * torch.tensor(
        scale, dtype=F64
    ).view(-1, 1, 1, 1)
    grid = quantile_grid(v, steps)
    flat = v.flatten(1)
    assert grid.shape == (steps + 1, len(scale))
    assert (grid[0] == 0).all() and torch.equal(grid[-1], flat.amax(1))
    assert (grid[1:] >= grid[:-1]).all()
    n = flat.shape[1]
    for j in range(1, steps + 1):
        below = (flat <= grid[j][:, None]).sum(1)
        assert (below >= math.floor(j * (n - 1) / steps)).all()  # (float rounding: no +1)


def test_quantile_grid_ends_near_typical_level():
    """Under fast Rayleigh fading at 20 dB the largest element level is near 1, so paper B's
    time grid starts its last step far above the typical element; the quantile grid does not."""
    g = gen(5)
    h2 = -torch.log(torch.rand(1, 16, 32, 32, generator=g, dtype=F64))  # |h|^2 ~ Exp(1)
    d = 0.01 / (h2 + 0.01)
    time_last = continuous_grid(SIG.S_inv(d.max()), 8, SIG)[1].item()
    q_last = quantile_grid(d, 8)[1].item()
    assert q_last < d.median().item() < time_last


def test_fading_grid_rejected():
    with pytest.raises(ValueError, match="fading_grid"):
        diffusion_receive(torch.zeros(1, 2), torch.full((1, 2), 0.1), Oracle(0), fading_grid="x")


def test_waterfill_seeded_reproducible():
    g = gen(1)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=F64)
    b = torch.rand(2, 3, 8, 8, generator=g, dtype=F64) * 0.5
    den = gaussian_mmse(1.0)
    a1 = fast_fading_sample(x, b, den, steps=4, generator=gen(7))
    a2 = fast_fading_sample(x, b, den, steps=4, generator=gen(7))
    a3 = fast_fading_sample(x, b, den, steps=4, generator=gen(8))
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)


@pytest.mark.parametrize("variant", ["waterfill", "reference"])
def test_waterfill_repeated_levels_cost_no_call(variant):
    """A grid that repeats levels (quantiles of few distinct element levels) runs exactly as
    the grid without the repeats: same network calls, same noise draws, same result."""
    g = gen(5)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=F64)
    b = torch.where(torch.rand(2, 3, 8, 8, generator=g, dtype=F64) < 0.5, 0.3, 0.6).to(F64)
    calls = []

    def den(v, level):  # deterministic, not an oracle: any skipped or extra step would show
        calls.append(level.clone())
        return 0.8 * v

    rep = torch.tensor([0.0, 0.3, 0.3, 0.3, 0.45, 0.6, 0.6, 0.6, 0.6], dtype=F64)
    out = waterfill_sample(x, b, rep, den, gen(6), variant)
    assert [c.tolist() for c in calls] == [[0.6, 0.6], [0.45, 0.45], [0.3, 0.3]]
    calls.clear()
    dedup = torch.tensor([0.0, 0.3, 0.45, 0.6], dtype=F64)
    assert torch.equal(out, waterfill_sample(x, b, dedup, den, gen(6), variant))
    assert len(calls) == 3


@pytest.mark.parametrize("variant", ["waterfill", "reference"])
def test_waterfill_samples_average_of_runs(variant):
    """samples=N is the mean of N single runs drawn one after another from the generator;
    an oracle stays exact with N x K network calls."""
    g = gen(4)
    x0 = torch.randn(2, 3, 8, 8, generator=g, dtype=F64)
    b = torch.rand(2, 3, 8, 8, generator=g, dtype=F64) * 0.6
    x = (1 - b).sqrt() * x0 + b.sqrt() * torch.randn(x0.shape, generator=g, dtype=F64)
    den = gaussian_mmse(1.0)
    avg = fast_fading_sample(x, b, den, steps=4, generator=gen(9), variant=variant, samples=3)
    g1 = gen(9)
    runs = [fast_fading_sample(x, b, den, steps=4, generator=g1, variant=variant) for _ in "abc"]
    assert torch.allclose(avg, torch.stack(runs).mean(0), atol=1e-12)
    assert not torch.allclose(runs[0], runs[1])
    oracle = Oracle(x0)
    out = fast_fading_sample(x, b, oracle, steps=4, generator=gen(2), variant=variant, samples=3)
    assert torch.allclose(out, x0, atol=1e-10) and len(oracle.calls) == 12


def test_waterfill_samples_lower_mse():
    """Averaging runs removes part of the injected noise's variance: with the exact
    posterior-mean denoiser of a Gaussian prior the MSE to x0 falls with the number of runs
    (measured 0.633 / 0.523 / 0.495 for 1 / 4 / 16 runs at K=4 on this draw)."""
    g = gen(0)
    n = 40_000
    x0 = torch.randn(1, n, generator=g, dtype=F64)
    d = torch.rand(1, n, generator=g, dtype=F64) * 0.9
    x = (1 - d).sqrt() * x0 + d.sqrt() * torch.randn(1, n, generator=g, dtype=F64)
    mse = [
        (fast_fading_sample(x, d, gaussian_mmse(1.0), 4, generator=gen(1), samples=s) - x0)
        .pow(2)
        .mean()
        .item()
        for s in (1, 4, 16)
    ]
    assert mse[0] - mse[1] > 0.05 and mse[1] - mse[2] > 0.01
    assert mse[2] > d.mean().item()  # never below the MMSE (posterior variance mean(d))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_waterfill_samples_rejected(bad):
    x = torch.zeros(1, 4, dtype=F64)
    with pytest.raises(ValueError, match="samples"):
        waterfill_sample(
            x, torch.full_like(x, 0.3), torch.tensor([0.0, 0.5]), Oracle(0), samples=bad
        )
    with pytest.raises(ValueError, match="fading_samples"):
        diffusion_receive(x, torch.rand(1, 4, dtype=F64), Oracle(0), fading_samples=bad)


# ============================================================================== clamping
@pytest.mark.parametrize("rule", RULES)
def test_infinite_snr_skips(rule):
    f, _, ft = received(2, (3, 4, 4), torch.zeros(2, 1, 1, 1), 0)

    def never(x, lv):
        raise AssertionError("denoiser must not be called")

    res = diffusion_receive(ft, torch.zeros(2, 1, 1, 1), never, p0=1.7, rule=rule)
    assert bool(res.start.skip.all()) and res.info["network_calls"] == 0
    assert torch.allclose(res.f_hat, ft, atol=1e-12)  # alpha f_tilde / sqrt(P0) = f_tilde
    assert torch.allclose(res.f_hat, f, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
def test_very_low_snr_starts_from_noise(rule):
    d = level_from_snr(db_to_linear(torch.tensor([-60.0], dtype=F64))).reshape(1, 1, 1, 1)
    _, _, ft = received(1, (3, 4, 4), d, 0)
    for steps in (1, 3):
        rec = DiffusionReceiver(gaussian_mmse(1.0), rule=rule, steps=steps)
        out = rec(ft, d)
        assert bool(rec.last.start.start_from_noise.all())
        top = 1.0 if rule != "vp" else LINEAR.level(1000).item()
        assert rec.last.start.level.item() == pytest.approx(top)
        assert torch.isfinite(out).all()
        if steps == 1:  # one-step MMSE at no information: ~ the prior mean 0
            assert out.abs().max() < 0.05


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("variant", ["waterfill", "reference", "naive"])
def test_extreme_levels_never_nan(rule, variant):
    vals = torch.tensor([0.0, 1.0, 1e-12, 1 - 1e-12], dtype=F64)
    g = gen(2)
    # per image
    d_img = vals.reshape(4, 1, 1, 1)
    _, _, ft = received(4, (2, 4, 4), d_img, 1)
    for p0 in (0.5, 1.0, 2.0):
        out = diffusion_receive(ft, d_img, gaussian_mmse(p0), p0=p0, rule=rule, steps=3)
        assert torch.isfinite(out.f_hat).all()
        # per element, all four extremes inside every image
        d_el = vals[torch.randint(0, 4, (4, 2, 4, 4), generator=g)]
        _, _, ft2 = received(4, (2, 4, 4), d_el, 1)
        res = diffusion_receive(
            ft2, d_el, gaussian_mmse(p0), p0=p0, rule=rule, steps=3, fading=variant, generator=g
        )
        assert torch.isfinite(res.f_hat).all()
    for m in (match(snr_from_level(vals), r) for r in RULES):
        for field in (m.t, m.level, m.alpha):
            assert torch.isfinite(field.to(F64)).all()


def test_receiver_shapes_and_call_counts():
    _, _, ft = received(3, (2, 4, 4), torch.tensor(0.2), 0)
    d_img = torch.full((3, 1, 1, 1), 0.2, dtype=F64)
    den = gaussian_mmse(1.0)
    a = diffusion_receive(ft, d_img, den, steps=5)
    b = diffusion_receive(ft, d_img.reshape(3), den, steps=5)
    c = diffusion_receive(ft, d_img.expand_as(ft), den, steps=5)  # constant per element
    assert torch.equal(a.f_hat, b.f_hat) and torch.equal(a.f_hat, c.f_hat)
    assert not c.per_element and a.info["network_calls"] == 5
    with pytest.raises(ValueError):
        diffusion_receive(ft, d_img, den, steps=0)
    with pytest.raises(TypeError):
        diffusion_receive(ft, d_img, den, rule="vp", schedule=SIG)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("p0", [1.0, 2.5])
def test_stop_at_decoder_snr_oracle(steps, p0):
    """``stop_snr_db``: with a perfect denoiser the output is exactly the LMMSE estimate of the
    same image received at the stop SNR with the same noise, ``sqrt(1-d_s) (sqrt(1-d_s) f +
    sqrt(d_s) n)``; images already above the stop SNR get the plain LMMSE estimate."""
    snr_db = torch.tensor([-10.0, 0.0, 5.0, 15.0], dtype=F64)
    d = (1 / (1 + 10 ** (snr_db / 10))).view(-1, 1, 1, 1)
    f, n, ft = received(4, (3, 8, 8), d, 41)
    oracle = Oracle(math.sqrt(p0) * f[:3])  # the image above the stop SNR is not sent
    res = diffusion_receive(ft, d, oracle, p0=p0, steps=steps, stop_snr_db=10.0)
    d_s = 1 / (1 + 10.0)
    want = math.sqrt(1 - d_s) * (math.sqrt(1 - d_s) * f + math.sqrt(d_s) * n)
    assert torch.allclose(res.f_hat[:3], want[:3], atol=1e-9)
    assert torch.allclose(res.f_hat[3], (1 - d[3]).sqrt() * ft[3], atol=1e-12)
    assert res.info["n_skip"] == 1 and len(oracle.calls) == steps
    assert all(call[0].shape[0] == 3 for call in oracle.calls)  # skipped image not sent
    with pytest.raises(ValueError, match="continuous"):
        diffusion_receive(ft, d, oracle, rule="vp", stop_snr_db=10.0)
    # per-element levels (fast fading): the stop is ignored, the oracle recovers the clean f
    de = torch.rand(ft.shape, generator=gen(42), dtype=F64) * 0.5 + 0.01
    f2, _, ft2 = received(4, (3, 8, 8), de, 43)
    oracle2 = Oracle(math.sqrt(p0) * f2)
    res = diffusion_receive(ft2, de, oracle2, p0=p0, steps=2, stop_snr_db=10.0, fading="waterfill")
    assert res.per_element and torch.allclose(res.f_hat, f2, atol=1e-9)


@pytest.mark.parametrize("per_image_shape", [(4, 1, 1, 1), (4,)])
def test_receiver_skips_the_network_above_skip_snr(per_image_shape):
    """skip_snr_db: images at or above it get the LMMSE estimate without a network call; the
    others get exactly what the receiver gives them alone. The levels may come as [B] too (the
    latents are 4 wide, as many as images: a [B] level must not scale the columns)."""
    snrs = torch.tensor([0.0, 20.0, -5.0, 10.0], dtype=F64)
    d4 = level_from_snr(db_to_linear(snrs)).reshape(4, 1, 1, 1)
    _, _, ft = received(4, (3, 4, 4), d4, 3)
    d = d4.reshape(per_image_shape)
    sizes: list[int] = []

    def den(x, level):
        sizes.append(x.shape[0])
        return gaussian_mmse(1.0)(x, level) * 0.9  # not the LMMSE: visible if called

    rec = DiffusionReceiver(den, steps=2, skip_snr_db=10.0)
    out = rec(ft, d)
    assert sizes == [2, 2] and rec.last.info["n_skip_snr"] == 2
    assert rec.last.info["network_calls"] == 2
    for i in (1, 3):
        torch.testing.assert_close(out[i], (1 - d4[i]).sqrt() * ft[i])
    alone = DiffusionReceiver(den, steps=2)(ft[[0, 2]], d4[[0, 2]])
    torch.testing.assert_close(out[[0, 2]], alone)
    sizes.clear()
    rec(ft[[1, 3]], d[[1, 3]])
    assert sizes == [] and rec.last is None  # all above: no call at all
    one = rec(ft[[0, 1, 3]], d[[0, 1, 3]])  # a single image below
    assert sizes == [1, 1] and rec.info["n_skip_snr"] == 2
    torch.testing.assert_close(one[0], alone[0])


def test_stopped_receiver_skips_to_the_same_output():
    """A receiver stopped at ``stop_snr_db`` returns the LMMSE latent at or above it, so
    skipping from there (what deepjscc+dm does) changes no output, only the work: no matching
    and no network call for those images; ``info`` describes every call, all-skipped too."""
    snrs = torch.tensor([0.0, 20.0, -5.0, 15.0, 12.0], dtype=F64)
    d = level_from_snr(db_to_linear(snrs)).reshape(5, 1, 1, 1)
    _, _, ft = received(5, (3, 4, 4), d, 5)
    sizes: list[int] = []

    def den(x, level):
        sizes.append(x.shape[0])
        return gaussian_mmse(1.0)(x, level) * 0.9  # not the LMMSE: visible if called

    stopped = DiffusionReceiver(den, steps=2, stop_snr_db=10.0)
    both = DiffusionReceiver(den, steps=2, stop_snr_db=10.0, skip_snr_db=10.0)
    torch.testing.assert_close(both(ft, d), stopped(ft, d), rtol=0, atol=1e-12)
    assert sizes == [2, 2, 2, 2]  # two steps each, for the 2 noisy images only
    assert both.info["n_skip_snr"] == 3 and both.info["network_calls"] == 2
    assert stopped.info["n_skip"] == 3 and "n_skip_snr" not in stopped.info
    sizes.clear()
    high = [1, 3, 4]
    torch.testing.assert_close(both(ft[high], d[high]), (1 - d[high]).sqrt() * ft[high])
    assert sizes == [] and both.last is None
    assert both.info == {"network_calls": 0, "n_skip_snr": 3}


def test_default_fast_fading_receiver_is_naive():
    """The receivers' default under per-element levels is naive matching (one call at the
    per-image mean level): one-step water-filling starts every element from the largest level,
    i.e. from noise (docs/results.md "Fast Rayleigh fading"), and is opt-in."""
    d = torch.rand(2, 3, 8, 8, generator=gen(50), dtype=F64) * 0.6 + 0.01
    d[:, 0, 0, 0] = 0.999  # one element in a deep fade
    f, _, ft = received(2, d.shape[1:], d, 51)
    rec = DiffusionReceiver(gaussian_mmse(1.0))
    out = rec(ft, d, gen(52))
    assert rec.fading == "naive" and not rec.last.per_element
    naive = diffusion_receive(ft, d, gaussian_mmse(1.0), fading="naive").f_hat
    assert torch.equal(out, naive)
    water = diffusion_receive(ft, d, gaussian_mmse(1.0), fading="waterfill", generator=gen(52))
    assert water.per_element
    # from the deep-fade level one water-filling step is far worse than the mean-level call
    assert (water.f_hat - f).pow(2).mean() > 1.5 * (out - f).pow(2).mean()


@pytest.mark.parametrize("rule", RULES)
def test_matching_refuses_db_and_nan(rule):
    """A linear SNR is >= 0: a negative one (dB passed by mistake) or NaN would silently start
    from noise; refused, with the conversion named. 0 and +inf stay valid (noise / skip)."""
    with pytest.raises(ValueError, match=r"linear SNR must be >= 0, got -5: if it is in dB"):
        match(torch.tensor([-5.0, 0.0]), rule)
    with pytest.raises(ValueError, match="NaN"):
        match(torch.tensor([float("nan")]), rule)
    m = match(torch.tensor([0.0, math.inf], dtype=F64), rule)
    assert m.start_from_noise.tolist() == [True, False] and m.skip.tolist() == [False, True]


def test_receiver_refuses_bad_levels_and_options():
    """Noise levels are the noise's share of the power, in [0, 1], one per image or per element:
    NaN (was: treated as noiseless), an SNR passed as a level (was: clamped to 1) and a shape
    that fits neither are refused; so are bad options, when the receiver is built."""
    ft = torch.randn(3, 2, 4, 4, generator=gen(60), dtype=F64)
    den = gaussian_mmse(1.0)
    for d, msg in (
        (torch.tensor([math.nan, 0.1, 0.1]), "NaN"),
        (torch.tensor([10.0, 0.1, 0.1]), r"in \[0, 1\].*d = 1/\(1\+k\)"),
        (torch.tensor([0.1, 0.2]), "fit neither one per image"),
    ):
        with pytest.raises(ValueError, match=msg):
            diffusion_receive(ft, d, den)
    assert diffusion_receive(ft, torch.tensor([1 + 1e-9, 0.0, 0.5]), den).f_hat.isfinite().all()
    for kw, msg in (
        ({"rule": "bogus"}, "rule must be one of"),
        ({"steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"steps": 2.5}, "steps must be an integer >= 1, got 2.5"),  # was truncated to 2
        ({"fading": "x"}, "fading must be one of"),
        ({"fading_samples": 0}, "fading_samples must be"),
    ):
        with pytest.raises(ValueError, match=msg):
            DiffusionReceiver(den, **kw)  # at construction, not at the first call
        with pytest.raises(ValueError, match=msg):
            diffusion_receive(ft, torch.full((3,), 0.3), den, **kw)
    assert DiffusionReceiver(den, steps=np.int64(3)).steps == 3  # numpy integers are integers


def test_grids_and_schedules_refuse_non_integer_counts():
    """0 steps gave a NaN grid and T=10.5 a linspace error deep inside: one ValueError each."""
    for grid in (lambda: continuous_grid(torch.tensor([0.5]), 0), lambda: ddm_grid(0.5, 0)):
        with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
            grid()
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        quantile_grid(torch.rand(1, 8), 0)
    with pytest.raises(ValueError, match=r"T must be an integer >= 1, got 10\.5"):
        DDPMSchedule(T=10.5)


def test_vp_closed_form_constant_schedule():
    """D = 0 (constant beta, or T = 1): t* ~ L / beta (was NaN, or a division by zero)."""
    t = vp_closed_form_t(1.0, beta_start=0.01, beta_end=0.01, T=100)
    assert float(t) == pytest.approx(math.log(2.0) / 0.01)  # L = ln(1 + P0/k) = ln 2
    # the exact step (abar_t = 0.99^t reaches level 1/2 at t = 68.97) is within half a step
    assert abs(float(t) - math.log(2.0) / -math.log(0.99)) < 0.5
    assert float(vp_closed_form_t(1.0, T=1)) == 1.0  # L / beta_1 = 6931, clamped to [0, T]


def test_schedules_refuse_nan_and_impossible_betas():
    """NaN passed through the clamps (index_from_level returned step 1 for it), and betas
    outside (0, 1) built a table with negative alpha-bar."""
    from semcom.diffusion import DDPMSchedule, SigmoidSchedule

    for call in (SigmoidSchedule().S, SigmoidSchedule().S_inv, DDPMSchedule().index_from_level):
        with pytest.raises(ValueError, match="holds NaN"):
            call(torch.tensor([0.5, float("nan")]))
    with pytest.raises(ValueError, match="0 < beta_start <= beta_end < 1"):
        DDPMSchedule("linear", 10, beta_start=0.5, beta_end=1.5)


# ================================================================ conventions, pinned values
def test_ddpm_float_steps_are_rounded_not_truncated() -> None:
    """``alpha_bar``/``level`` round a float step to the nearest index (half to even), then
    clamp it to ``[0, T]``."""
    assert LINEAR.alpha_bar(2.6).item() == LINEAR.alpha_bar(3).item()
    t = torch.tensor([0.4, 17.7, 999.5, 1200.0], dtype=F64)
    assert torch.equal(LINEAR.level(t), LINEAR.levels[[0, 18, 1000, 1000]])


def test_timestep_below_the_first_step_is_linear_in_the_level() -> None:
    """Above lambda_1 the fractional step runs linearly in v from 0 (v = 0) to 1 (v = v_1)."""
    v1 = LINEAR.levels[1].item()
    v = torch.tensor([0.0, 0.25 * v1, 0.5 * v1, v1], dtype=F64)
    want = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=F64)
    assert torch.allclose(LINEAR.timestep_from_level(v), want, atol=1e-12)


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_ddm_forward_coefficients(t: float) -> None:
    """Paper A's DDM form ``x_t = (1-t) x0 + sqrt(t) eps``: signal ``1-t``, noise ``sqrt(t)``;
    divided by ``c_t`` they are the VP pair ``(sqrt(1-v), sqrt(v))``."""
    ddm = DDMSchedule()
    a, s, c = ddm.signal_coef(t).item(), ddm.noise_std(t).item(), ddm.scale(t).item()
    assert a == pytest.approx(1 - t, abs=1e-15)
    assert s == pytest.approx(math.sqrt(t), abs=1e-15)
    v = ddm.level(t).item()
    assert (a / c) ** 2 == pytest.approx(1 - v, abs=1e-12)
    assert (s / c) ** 2 == pytest.approx(v, abs=1e-12)


def test_level_from_snr_nan_negative_and_inf() -> None:
    """``d = 1/(1+k)``: NaN and negative k count as no signal (d = 1), +inf as no noise."""
    k = torch.tensor([math.nan, -3.0, math.inf, 0.0, 3.0], dtype=F64)
    assert level_from_snr(k).tolist() == [1.0, 1.0, 0.0, 1.0, 0.25]


@pytest.mark.parametrize("rule", RULES)
def test_matching_refuses_small_negative_snrs(rule: str) -> None:
    """Every negative linear SNR is refused, not only those below -1 (-0.5 is no valid
    ratio of powers either)."""
    for k in (-0.5, -1e-9):
        with pytest.raises(ValueError, match="linear SNR must be >= 0"):
            match(torch.tensor([k], dtype=F64), rule)


def test_match_vp_flags_only_the_table_ends() -> None:
    """t* = T and clamping at the bottom only below lambda_T; t* = 0 (skip) above lambda_1;
    the steps next to the ends are ordinary matches."""
    lam = LINEAR.log_snrs
    k = torch.tensor(
        [0.0, 1e-6, math.exp(lam[999].item()), 0.999 * math.exp(lam[1].item()), 1e6, math.inf],
        dtype=F64,
    )
    m = match_vp(k, LINEAR)
    assert m.t.tolist() == [1000, 1000, 999, 1, 0, 0]
    assert m.start_from_noise.tolist() == [True, True, False, False, False, False]
    assert m.skip.tolist() == [False, False, False, False, True, True]
    assert m.clamped.tolist() == [True, True, False, False, True, True]


@settings(max_examples=50, deadline=None)
@given(snr_db=st.floats(-30.0, 35.0), p0=st.floats(0.25, 4.0))
def test_vp_closed_form_solves_the_first_order_equation(snr_db: float, p0: float) -> None:
    """docs/math.md §1.1: ``-ln abar_t ~ sum_{s<=t} beta_s = beta_1 t + D t (t-1)/2``; the closed
    form is the positive root of ``beta_1 t + D t (t-1)/2 = ln(1 + P0/k)``."""
    k = 10 ** (snr_db / 10)
    t = float(vp_closed_form_t(k, p0))
    b1, D = 1e-4, (0.02 - 1e-4) / 999
    assert 0 < t < 1000
    assert b1 * t + D * t * (t - 1) / 2 == pytest.approx(math.log1p(p0 / k), rel=1e-9)


def test_vp_closed_form_error_is_what_its_docstring_states() -> None:
    """The error bounds :func:`vp_closed_form_t` states (steps from the exact step, interpolated
    in log-SNR, and from the table's integer step, over -30..35 dB) hold on a dense SNR grid
    and are tight to 0.05 step: a bound measured on a coarse grid (2.6, once) misses the worst
    SNR between its points (2.80 near -30 dB)."""
    import re

    doc = " ".join((vp_closed_form_t.__doc__ or "").split())
    found = re.search(r"within ([\d.]+) steps of the exact step .*? and ([\d.]+) of the table", doc)
    assert found, doc
    to_exact, to_integer = float(found.group(1)), float(found.group(2))
    k = db_to_linear(torch.linspace(-30, 35, 6501, dtype=F64))  # every 0.01 dB
    t = vp_closed_form_t(k)
    err_exact = float((t - LINEAR.timestep_from_level(target_level(k))).abs().max())
    err_integer = float((t - match_vp(k, LINEAR).t).abs().max())
    assert to_exact - 0.05 < err_exact <= to_exact
    assert to_integer - 0.05 < err_integer <= to_integer


def test_ddim_leaves_images_at_level_zero_unchanged() -> None:
    """Where B_t = 0 the DDIM step returns its input, not the denoiser output: in a batch a
    noiseless image (skipped, t* = 0) comes back as received beside a noisy one."""
    x = torch.randn(2, 3, 4, 4, generator=gen(70), dtype=F64)
    out = ddim_update(x, torch.zeros_like(x), torch.tensor([0.0, 0.5]), torch.tensor([0.0, 0.2]))
    assert torch.equal(out[0], x[0]) and not torch.equal(out[1], x[1])

    def zero(xx: torch.Tensor, lv: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(xx)

    d = torch.tensor([0.0, 0.5], dtype=F64)
    for rule in ("continuous", "vp"):
        res = diffusion_receive(x, d, zero, rule=rule, steps=2)
        assert res.start.skip.tolist() == [True, False]
        assert torch.equal(res.f_hat[0], x[0]), rule


def test_grid_values() -> None:
    """``continuous_grid``: ``S(end + j (m - end)/K)``; ``ddpm_grid``: indices
    ``round(j t*/K)`` (7 in 3 steps: 0, 2, 5, 7)."""
    g = continuous_grid(torch.tensor([0.8, 0.5], dtype=F64), 4, SIG, end=0.2)
    times = torch.tensor([[0.2, 0.35, 0.5, 0.65, 0.8], [0.2, 0.275, 0.35, 0.425, 0.5]], dtype=F64)
    assert g.shape == (5, 2)
    assert torch.allclose(g, SIG.S(times.T), atol=1e-15)
    want = SIG.S(torch.tensor([0.0, 0.2, 0.4, 0.6], dtype=F64))
    assert torch.allclose(continuous_grid(0.6, 3, SIG)[:, 0], want, atol=1e-15)
    assert torch.equal(ddpm_grid(7, 3, LINEAR)[:, 0], LINEAR.level(torch.tensor([0, 2, 5, 7])))


def test_levels_tolerate_only_rounding() -> None:
    """A noise level may stray outside [0, 1] by rounding (1e-6), not by 1e-3."""
    ft = torch.randn(3, 2, 4, 4, generator=gen(71), dtype=F64)
    den = gaussian_mmse(1.0)
    for bad in (1.001, -0.001):
        with pytest.raises(ValueError, match=r"in \[0, 1\]"):
            diffusion_receive(ft, torch.tensor([bad, 0.1, 0.1]), den)
    assert diffusion_receive(ft, torch.tensor([1 + 1e-7, -1e-7, 0.1]), den).f_hat.isfinite().all()


def test_naive_fast_fading_starts_at_the_mean_level() -> None:
    """``variant="naive"`` runs Algorithm 2 from ``m = S^-1(mean_i b_i)``: the network's first
    level is each image's mean element level."""
    g = gen(72)
    x0 = torch.randn(2, 3, 8, 8, generator=g, dtype=F64)
    b = torch.rand(2, 3, 8, 8, generator=g, dtype=F64) * 0.8
    x = (1 - b).sqrt() * x0 + b.sqrt() * torch.randn(x0.shape, generator=g, dtype=F64)
    oracle = Oracle(x0)
    fast_fading_sample(x, b, oracle, steps=2, variant="naive")
    assert torch.allclose(oracle.calls[0][1], b.mean(dim=(1, 2, 3)), atol=1e-12)


def test_per_element_vp_starts_at_the_ceiling_step() -> None:
    """Per-element VP levels start at the smallest table step whose level is at or above the
    largest element level (not the nearest step in log-SNR, which may lie below it)."""
    g = gen(73)
    d = torch.rand(1, 2, 8, 8, generator=g, dtype=F64) * 0.5 + 0.01
    lo, hi = LINEAR.levels[300].item(), LINEAR.levels[301].item()
    d[0, 0, 0, 0] = lo + 0.05 * (hi - lo)  # nearest in log-SNR: 300; ceiling: 301
    f, _, ft = received(1, d.shape[1:], d, 8)
    res = diffusion_receive(ft, d, Oracle(f), rule="vp", steps=3, generator=g, fading="waterfill")
    assert res.start.t.tolist() == [301]
    assert torch.allclose(res.f_hat, f, atol=1e-9)


def test_waterfill_two_samples_are_averaged() -> None:
    """``samples=2`` returns the mean of the two runs (an oracle stays exact), not their sum."""
    g = gen(74)
    x0 = torch.randn(2, 3, 8, 8, generator=g, dtype=F64)
    b = torch.rand(2, 3, 8, 8, generator=g, dtype=F64) * 0.6
    x = (1 - b).sqrt() * x0 + b.sqrt() * torch.randn(x0.shape, generator=g, dtype=F64)
    out = fast_fading_sample(x, b, Oracle(x0), steps=3, generator=gen(5), samples=2)
    assert torch.allclose(out, x0, atol=1e-10)


def test_stop_snr_image_exactly_at_the_stop_gets_lmmse() -> None:
    """An image received exactly at the stop SNR is "at or above" it: plain LMMSE, counted as
    skipped, not run through the sampler."""
    d = torch.tensor([0.5, 0.8], dtype=F64).view(2, 1, 1, 1)  # 0 dB (the stop) and -6 dB
    f, _, ft = received(2, (3, 8, 8), d, 75)
    res = diffusion_receive(ft, d, Oracle(f[1:]), steps=2, stop_snr_db=0.0)
    assert res.info["n_skip"] == 1
    assert torch.allclose(res.f_hat[0], math.sqrt(0.5) * ft[0], atol=1e-12)


@pytest.mark.parametrize("via", ["receiver", "function"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_receiver_runs_the_network_in_its_dtype_and_answers_in_the_inputs(dtype, via):
    """A float64 (equalised from a float64 latent) or half f_tilde: the float32 network runs
    in float32, the estimate comes back in the input's dtype, close to the float32 one; the
    bare :func:`diffusion_receive` as :class:`DiffusionReceiver` (it raised torch's dtype
    error), and both refuse an integer latent with a ValueError."""
    from semcom.channels import Channel, equalize, pack, unpad_like
    from semcom.diffusion.denoiser import DenoiserConfig, LatentUNet

    torch.manual_seed(0)
    net = LatentUNet(DenoiserConfig(channels=4, width=8, mults=(1, 2), blocks=1, emb_dim=16))
    with torch.no_grad():
        for p in net.parameters():  # a network whose output is not the LMMSE estimate
            p.add_(0.05 * torch.randn_like(p))
    p = pack(torch.randn(2, 4, 8, 8, dtype=torch.float64))
    eq = equalize(*Channel("awgn")(p.z, 0.0, torch.Generator().manual_seed(1)))
    f = unpad_like(eq.f_tilde, p)
    receiver = DiffusionReceiver(net.eval(), steps=2, rule="continuous")

    def rx(f_tilde, d, generator=None):
        if via == "receiver":
            return receiver(f_tilde, d, generator)
        return diffusion_receive(f_tilde, d, net, steps=2, generator=generator).f_hat

    want = rx(f.float(), eq.d.float(), torch.Generator().manual_seed(2))
    got = rx(f.to(dtype), eq.d, torch.Generator().manual_seed(2))
    assert got.dtype == dtype
    assert torch.allclose(got.float(), want, atol=1e-2 if dtype == torch.float16 else 1e-4)
    with pytest.raises(ValueError, match="floating"):
        rx(f.long(), eq.d)


# ================================================================ properties (hypothesis)
# linear tables up to beta 0.05 and T = 300 keep abar_T above ~3e-7: a level 1 - abar closer
# to 1 keeps too few digits of abar in float64 to find its step again (abar_T ~ 1e-16 does not)
_schedules = st.one_of(
    st.builds(
        lambda T, b1, frac: DDPMSchedule("linear", T, b1, b1 + frac * (0.05 - b1)),
        st.integers(1, 300),
        st.floats(1e-5, 0.05),
        st.floats(0.0, 1.0),
    ),
    st.builds(lambda T: DDPMSchedule("cosine", T), st.integers(1, 300)),
)


@settings(max_examples=40, deadline=None)
@given(sched=_schedules)
def test_ddpm_table_lookups_invert_each_other(sched):
    """On any linear or cosine table: abar strictly decreasing, ``abar_t + level_t = 1``, and
    every step is found again from its own level (nearest in log-SNR, ceiling, fractional)."""
    idx = torch.arange(sched.T + 1)
    v = sched.level(idx)
    assert (sched.alpha_bars.diff() < 0).all() and (sched.log_snrs.diff() < 0).all()
    assert torch.equal(sched.alpha_bar(idx) + v, torch.ones_like(v))
    assert torch.equal(sched.index_from_level(v), idx)
    assert torch.equal(sched.index_from_level(v, mode="ceil"), idx)
    assert torch.allclose(sched.timestep_from_level(v), idx.to(F64), atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    sched=_schedules,
    snr_db=st.lists(st.floats(-70.0, 70.0), min_size=1, max_size=6),
    p0=st.floats(0.1, 10.0),
)
def test_vp_matching_is_the_nearest_log_snr_step_on_any_table(sched, snr_db, p0):
    """Theorem 1 (VP) on any table: ``t*`` is the brute-force ``argmin_t |lambda_t -
    ln(k/P0)|``, 0 above ``lambda_1`` and T below ``lambda_T``, and never rises with the SNR."""
    k = db_to_linear(torch.tensor(sorted(snr_db), dtype=F64))
    m = match_vp(k, sched, p0)
    lam = torch.log(k / p0)
    table = sched.log_snrs
    brute = (table[1:][None, :] - lam[:, None]).abs().argmin(1) + 1
    brute = torch.where(lam > table[1], 0, torch.where(lam < table[-1], sched.T, brute))
    assert torch.equal(m.t, brute)
    assert (m.t.diff() <= 0).all()
    assert torch.equal(m.level, sched.level(m.t))


@settings(max_examples=40, deadline=None)
@given(
    start=st.floats(-3.0, 1.0),
    width=st.floats(0.5, 6.0),
    tau=st.floats(0.3, 2.0),
    a_db=st.floats(-40.0, 39.0),
    frac=st.floats(0.0, 1.0),
    p0=st.floats(0.25, 4.0),
)
def test_continuous_matching_hits_the_target_on_any_sigmoid_schedule(
    start, width, tau, a_db, frac, p0
):
    """Paper B eq. 19 with general P0 on any sigmoid schedule: ``S(m) = P0/(k+P0)`` and m
    falls strictly as the SNR rises (the default schedule is tested above)."""
    s = SigmoidSchedule(start, start + width, tau)
    lo = db_to_linear(a_db)
    hi = db_to_linear(a_db + 1e-3 + frac * (40.0 - a_db - 1e-3))
    m_lo, m_hi = match_continuous(lo, s, p0), match_continuous(hi, s, p0)
    for m, k in ((m_lo, lo), (m_hi, hi)):
        assert not m.clamped
        assert float(m.level) == float(p0 / (k + p0))
        assert float(s.S(m.t)) == pytest.approx(float(m.level), rel=1e-9)
    assert m_hi.t < m_lo.t


@settings(max_examples=60, deadline=None)
@given(
    snr_db=st.floats(-40.0, 40.0),
    p0=st.floats(0.1, 10.0),
    p_y=st.floats(0.1, 10.0),
    rule=st.sampled_from(RULES),
)
def test_scaled_input_has_the_training_coefficients(snr_db, p0, p_y, rule):
    """Theorem 2 for any SNR and P0: ``alpha^2 P_y`` is the training energy at the matched
    step (``(1-v) P0 + v``; DDM ``(1-t)^2 P0 + t``), and on the receiver input
    ``sqrt(1-d) f + sqrt(d) n`` (``P_y = 1``) the continuous and DDM alphas give exactly the
    training coefficients: ``alpha sqrt(1-d) = c_sig sqrt(P0)``, ``alpha sqrt(d) = c_noise``."""
    k = float(db_to_linear(snr_db))
    d = 1.0 / (1.0 + k)
    m = match(k, rule, p0=p0, p_y=p_y)
    if rule == "ddm":
        t = float(m.t)
        c_sig, c_noise = 1.0 - t, math.sqrt(t)
        assert float(m.level) == pytest.approx(t / ((1 - t) ** 2 + t), rel=1e-12)
    else:
        v = float(m.level)
        c_sig, c_noise = math.sqrt(1.0 - v), math.sqrt(v)
    assert float(m.alpha) ** 2 * p_y == pytest.approx(c_sig**2 * p0 + c_noise**2, rel=1e-12)
    if rule == "vp":  # integer step: energy-matched only
        return
    if bool(m.clamped):  # beyond the schedule's ends (t* = 0: skipped): energy-matched only
        assert bool(m.skip) or bool(m.start_from_noise)
        return
    a = float(match(k, rule, p0=p0).alpha)
    assert a * math.sqrt(1 - d) == pytest.approx(c_sig * math.sqrt(p0), rel=1e-9)
    assert a * math.sqrt(d) == pytest.approx(c_noise, rel=1e-9)
    assert float(m.level) == pytest.approx(p0 / (k + p0), rel=1e-9)  # = target_level


@settings(max_examples=30, deadline=None)
@given(
    rule=st.sampled_from(["vp", "ddm"]),
    steps=st.integers(1, 8),
    snr_db=st.lists(st.floats(-20.0, 30.0), min_size=1, max_size=3),
    p0=st.floats(0.2, 5.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_oracle_vp_and_ddm_receivers_exact_for_any_start(rule, steps, snr_db, p0, seed):
    """An oracle denoiser recovers f exactly from any matched start in any number of steps
    (the continuous rule: ``test_oracle_continuous_every_step_exact``), with at most K calls;
    under the DDM rule every network input is the VP training variable with the same noise."""
    b = len(snr_db)
    d = level_from_snr(db_to_linear(torch.tensor(snr_db, dtype=F64))).reshape(b, 1, 1, 1)
    f, n, ft = received(b, (2, 3, 3), d, seed)
    oracle = Oracle(math.sqrt(p0) * f)
    res = diffusion_receive(ft, d, oracle, p0=p0, rule=rule, steps=steps)
    assert torch.allclose(res.f_hat, f, atol=1e-9)
    assert len(oracle.calls) == res.info["network_calls"] <= steps
    if rule == "ddm":
        for x, lv in oracle.calls:
            v = view(lv, x)
            want = (1 - v).sqrt() * math.sqrt(p0) * f + v.sqrt() * n
            assert torch.allclose(x, want, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    rule=st.sampled_from(RULES),
    variant=st.sampled_from(["waterfill", "reference", "naive"]),
    grid=st.sampled_from(["time", "quantile"]),
    steps=st.integers(1, 6),
    top=st.floats(0.01, 1.0),  # all levels below level_eps (1e-5) skip the denoiser: not exact
    extremes=st.booleans(),
    p0=st.floats(0.5, 4.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_oracle_per_element_receiver_exact_for_any_levels(
    rule, variant, grid, steps, top, extremes, p0, seed
):
    """Fast fading: whatever the element levels (clean elements and deep fades at d = 1
    included), rule, variant, grid and K, an oracle denoiser gives back f exactly."""
    g = gen(seed)
    d = torch.rand(2, 2, 4, 4, generator=g, dtype=F64) * top
    if extremes:
        pick = torch.rand(d.shape, generator=g)
        d = torch.where(pick < 0.15, 0.0, torch.where(pick > 0.85, 1.0, d))
    f, _, ft = received(2, d.shape[1:], d, seed)
    oracle = Oracle(math.sqrt(p0) * f)
    kw = dict(p0=p0, rule=rule, steps=steps, fading=variant, generator=g)
    grid = "time" if variant == "naive" else grid  # naive runs on the time grid only
    res = diffusion_receive(ft, d, oracle, fading_grid=grid, **kw)
    assert torch.allclose(res.f_hat, f, atol=1e-9)
    assert torch.isfinite(res.f_hat).all()


@settings(max_examples=60, deadline=None)
@given(
    levels=st.lists(
        st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0])), min_size=1, max_size=12
    ),
    bt=st.one_of(st.floats(0.0, 1.0), st.just(1.0)),
    seed=st.integers(0, 2**31 - 1),
)
def test_water_filling_injection_is_eq_23_exactly(levels, bt, seed):
    """Eq. 23 coefficient by coefficient: an element ``sqrt(1-b) x0 + sqrt(b) nu`` below the
    water level B_t leaves with signal coefficient ``sqrt(1-B_t)`` and noise variance (old plus
    injected) exactly ``B_t``, every radicand non-negative; one at or above it is untouched."""
    b = torch.tensor(levels, dtype=F64)
    if bt in levels:  # an element exactly at the level too
        b[0] = bt
    lt = torch.tensor([bt], dtype=F64)

    def inject(x):
        return inject_noise(x[None], b[None], lt, gen(seed))[0]

    eps = torch.randn(1, b.numel(), generator=gen(seed), dtype=F64)[0]
    fresh = inject(torch.zeros_like(b))  # c * eps
    sig = inject((1 - b).sqrt()) - fresh  # x0 = 1: the signal coefficient
    old = inject(b.sqrt()) - fresh  # nu = 1: the kept noise coefficient
    c = torch.where(eps != 0, fresh / torch.where(eps != 0, eps, 1.0), 0.0)
    below = b < bt
    level = torch.where(below, lt, b)
    assert torch.isfinite(sig).all() and torch.isfinite(old).all() and (c >= 0).all()
    assert torch.allclose(sig, (1 - level).sqrt(), atol=1e-12)
    assert torch.allclose(old.square() + c.square(), level, atol=1e-12)
    assert (fresh[~below] == 0).all()
    x = (1 - b).sqrt() * 0.3 + b.sqrt() * -1.2
    assert torch.equal(inject(x)[~below], x[~below])


@settings(max_examples=25, deadline=None)
@given(
    steps=st.integers(2, 8),
    stop=st.integers(1, 7),
    top=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**31 - 1),
)
def test_water_filling_keeps_its_invariant_at_every_stop(steps, stop, top, seed):
    """Algorithm 3 stopped after any step (oracle denoiser): every element sits at level
    ``b_i = min(d_i, S(t))`` with its signal coefficient ``sqrt(1 - b_i)`` exactly; the
    reference variant keeps each element's own noise (``sqrt(b_i) nu_i`` exactly), elements
    below the water are untouched by either variant."""
    stop = min(stop, steps - 1)
    g = gen(seed)
    x0 = torch.randn(1, 64, generator=g, dtype=F64)
    x1 = torch.randn(1, 64, generator=g, dtype=F64)  # another clean latent, same noise
    nu = torch.randn(1, 64, generator=g, dtype=F64)
    d = torch.rand(1, 64, generator=g, dtype=F64) * top
    grid = continuous_grid(SIG.S_inv(d.max()), steps, SIG)
    grid[-1] = torch.maximum(grid[-1], d.max())
    part = grid[stop:]  # steps K..stop+1, ending at level S(stop m / K)
    b = d.clamp(max=part[0].item())
    below = d < part[0].item()
    for variant in ("waterfill", "reference"):
        outs = [
            waterfill_sample(
                (1 - d).sqrt() * c + d.sqrt() * nu, d, part, Oracle(c), gen(1), variant
            )
            for c in (x0, x1)
        ]
        r0, r1 = (o - (1 - b).sqrt() * c for o, c in zip(outs, (x0, x1), strict=True))
        assert torch.allclose(r0, r1, atol=1e-10)  # the signal coefficient is sqrt(1 - b)
        assert torch.equal(outs[0][below], ((1 - d).sqrt() * x0 + d.sqrt() * nu)[below])
        if variant == "reference":
            assert torch.allclose(r0, b.sqrt() * nu, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(
    snr_db=st.lists(st.floats(-15.0, 25.0), min_size=1, max_size=4),
    stop_db=st.floats(-5.0, 15.0),
    steps=st.integers(1, 5),
    p0=st.floats(0.3, 4.0),
    seed=st.integers(0, 2**31 - 1),
)
@example(snr_db=[-0.25], stop_db=-0.25, steps=1, p0=0.99999, seed=0)  # counted as not skipped
@example(snr_db=[-0.015625], stop_db=-0.015625, steps=1, p0=0.99999, seed=0)  # a network call
def test_oracle_stopped_receiver_is_the_lmmse_at_the_stop_snr(snr_db, stop_db, steps, p0, seed):
    """``stop_snr_db`` with an oracle, for any SNRs, stop, K and P0: an image below the stop
    comes out as the LMMSE estimate of itself received at the stop SNR with the same noise,
    ``sqrt(1-d_s) (sqrt(1-d_s) f + sqrt(d_s) n)``; one at or above it (1e-6 dB of slack) as its
    own LMMSE estimate ``sqrt(1-d) f_tilde``, without a network call. An image at exactly the
    stop SNR with P0 = 0.99999 ran the sampler (its matched time a hair above the stop's)."""
    b = len(snr_db)
    k = db_to_linear(torch.tensor(snr_db, dtype=F64))
    d = level_from_snr(k).reshape(b, 1, 1, 1)
    f, n, ft = received(b, (2, 3, 3), d, seed)
    below = torch.tensor(snr_db) < stop_db - 1e-6
    oracle = Oracle(math.sqrt(p0) * f[below])
    res = diffusion_receive(ft, d, oracle, p0=p0, steps=steps, stop_snr_db=stop_db)
    d_s = float(level_from_snr(db_to_linear(stop_db)))
    want = math.sqrt(1 - d_s) * (math.sqrt(1 - d_s) * f + math.sqrt(d_s) * n)
    want = torch.where(below.view(b, 1, 1, 1), want, (1 - d).sqrt() * ft)
    assert torch.allclose(res.f_hat, want, atol=1e-9)
    assert res.info["n_skip"] == int((~below).sum())


def test_argument_checks_give_one_exception_type_per_kind_of_bad_input():
    """A string or None where numbers go: a TypeError naming the argument everywhere (steps
    and T said ValueError; p0, t_factor and tau raised Python's "'>' not supported between
    instances of 'str' and 'int'", naming nothing; a DiffusionReceiver took any p0 or t_factor
    until its first call); a bool or a complex number: a ValueError naming it (p0=True, a
    linear SNR or noise level of True were taken as 1; complex numbers were a TypeError)."""
    den = gaussian_mmse(1.0)
    _, _, ft = received(2, (2, 4, 4), torch.tensor(0.3), 0)
    d = torch.full((2,), 0.3, dtype=F64)
    checks = {
        "steps": [lambda v: DiffusionReceiver(den, steps=v),
                  lambda v: diffusion_receive(ft, d, den, steps=v),
                  lambda v: continuous_grid(torch.tensor([0.5]), v)],
        "fading_samples": [lambda v: DiffusionReceiver(den, fading_samples=v)],
        "T": [lambda v: DDPMSchedule(T=v)],
        "p0": [lambda v: DiffusionReceiver(den, p0=v),  # at construction, as steps
               lambda v: diffusion_receive(ft, d, den, p0=v),
               lambda v: target_level(1.0, p0=v), lambda v: ddm_t_from_snr(1.0, p0=v)],
        "t_factor": [lambda v: DiffusionReceiver(den, t_factor=v),
                     lambda v: diffusion_receive(ft, d, den, t_factor=v)],
        "alpha_factor": [lambda v: DiffusionReceiver(den, alpha_factor=v)],
        "level_eps": [lambda v: DiffusionReceiver(den, level_eps=v),
                      lambda v: match(1.0, "continuous", level_eps=v)],
        "stop_snr_db": [lambda v: DiffusionReceiver(den, stop_snr_db=v)],
        "skip_snr_db": [lambda v: DiffusionReceiver(den, skip_snr_db=v)],
        "tau": [lambda v: SigmoidSchedule(tau=v)],
        "end": [lambda v: SigmoidSchedule(end=v)],
        "snr": [lambda v: match(v, "continuous"), lambda v: target_level(v)],
        "d": [lambda v: diffusion_receive(ft, v, den)],
    }  # fmt: skip
    for name, calls in checks.items():
        for call in calls:
            for bad in ("2", None):
                if bad is None and name.endswith("snr_db"):
                    continue  # None: no stop / skip
                with pytest.raises(TypeError, match=rf"^{name} must be"):
                    call(bad)
            for bad in (True, np.bool_(True), 1 + 0j):
                with pytest.raises(ValueError, match=rf"^{name} must "):
                    call(bad)
    # each number check refuses out-of-range values at construction too, naming the option
    for kw, msg in (({"p0": 0.0}, "p0 must be > 0"), ({"t_factor": -1.0}, "t_factor must be >= 0"),
                    ({"alpha_factor": 0}, "alpha_factor must be > 0"),
                    ({"level_eps": math.nan}, r"level_eps must be in \[0, 0\.5\)"),
                    ({"level_eps": 0.5}, "level_eps must be in"),
                    ({"skip_snr_db": math.nan}, "skip_snr_db must be a number of dB")):  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            DiffusionReceiver(den, **kw)
    # real numbers of every kind pass as before
    assert DiffusionReceiver(den, p0=np.float32(2.0), t_factor=1, stop_snr_db=np.int64(5)).p0 == 2
    assert float(target_level(1.0, p0=torch.tensor(1.0))) == 0.5
    assert SigmoidSchedule(tau=np.float64(0.5)).tau == 0.5


def test_a_count_may_be_a_one_element_integer_tensor():
    """``steps=torch.tensor(4)`` counts as 4 (as one-element tensors are taken for real
    options); a float, bool or several-element tensor is still refused."""
    from semcom._checks import check_count

    assert check_count(torch.tensor(4), "steps") == 4
    assert check_count(torch.tensor([3]), "steps") == 3
    for bad in (torch.tensor(4.0), torch.tensor(True), torch.tensor(0)):
        with pytest.raises(ValueError, match="steps must be an integer >= 1"):
            check_count(bad, "steps")
    with pytest.raises(TypeError, match="steps must be an integer >= 1"):
        check_count(torch.tensor([1, 2]), "steps")


def test_schedule_and_matching_numbers_follow_the_argument_checks():
    """The schedules' constructor numbers, the schedule inputs, p_y and the SNR helpers as the
    other options: a string or None is a TypeError naming the argument (they raised Python's
    "'<' not supported between 'int' and 'str'", "unsupported operand type(s)" or torch's
    "new(): invalid data type 'str'"), a bool or a complex number a ValueError naming it
    (beta_end=True said "linear betas need ...", max_beta=True, p_y=True, a step or level of
    True and db_to_linear(True) were taken as 1, complex numbers lost their imaginary part)."""
    checks = {
        "beta_start": [lambda v: DDPMSchedule(beta_start=v),
                       lambda v: vp_closed_form_t(1.0, beta_start=v)],
        "beta_end": [lambda v: DDPMSchedule(beta_end=v),
                     lambda v: vp_closed_form_t(1.0, beta_end=v)],
        "cosine_s": [lambda v: DDPMSchedule("cosine", cosine_s=v)],
        "max_beta": [lambda v: DDPMSchedule("cosine", max_beta=v)],
        "T": [lambda v: vp_closed_form_t(1.0, T=v)],
        "p0": [lambda v: vp_closed_form_t(1.0, p0=v)],
        "start": [lambda v: SigmoidSchedule(start=v)],
        "t": [LINEAR.level, LINEAR.alpha_bar, SIG.S, DDMSchedule().level,
              DDMSchedule().signal_coef],
        "v": [SIG.S_inv, LINEAR.index_from_level, LINEAR.timestep_from_level,
              DDMSchedule().t_from_level],
        "p_y": [lambda v, r=r: match(1.0, r, p_y=v) for r in RULES],
        "snr": [ddm_t_from_snr, vp_closed_form_t, level_from_snr],
        "s2": [ddm_t_from_noise_ratio],
        "d": [snr_from_level],
        "snr_db": [db_to_linear, snr_to_no],
    }  # fmt: skip
    for name, calls in checks.items():
        for call in calls:
            for bad in ("2", None):
                with pytest.raises(TypeError, match=rf"^{name} must be"):
                    call(bad)
            for bad in (True, np.bool_(True), 1 + 0j):
                with pytest.raises(ValueError, match=rf"^{name} must "):
                    call(bad)
    # tensors and arrays of bools or complex numbers alike
    for call in (db_to_linear, snr_to_no, SIG.S, LINEAR.level):
        for bad in (torch.tensor([True, False]), torch.tensor([1 + 1j]), np.array([1 + 0j])):
            with pytest.raises(ValueError, match="must hold real"):
                call(bad)


def test_schedule_constructors_refuse_out_of_range_numbers():
    """NaN, inf and values that break the table are refused naming the argument and its range:
    a cosine offset s < 0 made abar rise above 1 (levels of 0 and log-SNRs of +inf after the
    first step), max_beta = 1 a log-SNR of -inf at T, a sigmoid end or tau of inf NaN levels,
    and a start / tau for which e^(-start/tau) overflows raised OverflowError."""
    for kw in ({"beta_start": math.nan}, {"beta_end": math.inf}, {"beta_start": 0.0},
               {"beta_start": 0.03}, {"beta_start": -math.inf}):  # fmt: skip
        with pytest.raises(ValueError, match=r"0 < beta_start <= beta_end < 1, got beta_start="):
            DDPMSchedule(**kw)
        with pytest.raises(ValueError, match=r"0 < beta_start <= beta_end < 1"):
            vp_closed_form_t(1.0, **kw)
    for s in (-0.5, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"^cosine_s must be a finite number >= 0"):
            DDPMSchedule("cosine", cosine_s=s)
    for b in (0.0, 1.0, math.nan):
        with pytest.raises(ValueError, match=r"^max_beta must be in \(0, 1\)"):
            DDPMSchedule("cosine", max_beta=b)
    for kw in ({"end": math.inf}, {"tau": math.inf}, {"start": math.nan}, {"start": -math.inf}):
        with pytest.raises(ValueError, match="needs finite end > start and tau > 0"):
            SigmoidSchedule(**kw)
    with pytest.raises(ValueError, match="flat in float64"):  # sig(100) = sig(200) = 1.0
        SigmoidSchedule(start=100.0, end=200.0, tau=1.0)
    steep = SigmoidSchedule(start=-1.0, end=3.0, tau=1e-3)  # sig(-1000) overflowed
    s = steep.S(torch.linspace(0, 1, 65, dtype=F64))
    assert s[0] == 0 and s[-1] == 1 and (s.diff() >= 0).all()
    # what the kind uses is checked in range; valid numbers of every kind give the same table
    cos = DDPMSchedule("cosine", 50)
    assert (cos.log_snrs[1:].diff() < 0).all() and cos.log_snrs[-1].isfinite()
    assert torch.equal(DDPMSchedule("cosine", 50, beta_start=0.5, beta_end=0.1).betas, cos.betas)
    lin = DDPMSchedule("linear", 50, 1e-4, 0.02)
    for b0, b1 in ((np.float64(1e-4), np.float64(0.02)), (torch.tensor(1e-4, dtype=F64), 0.02)):
        assert torch.equal(DDPMSchedule("linear", 50, b0, b1).betas, lin.betas)
    assert (DDPMSchedule("linear", 10, 0.01, 0.01).betas == 0.01).all()  # constant: allowed
    with pytest.raises(ValueError, match="holds NaN"):  # NaN.long() was step 0 (clean)
        LINEAR.level(torch.tensor([3.0, math.nan], dtype=F64))


def test_matchers_refuse_nan_and_negative_snrs_alike():
    """Every SNR -> step function refuses NaN and a negative linear SNR as match/target_level
    do (ddm_t_from_snr(nan) was 1, vp_closed_form_t(nan) T, ddm_t_from_noise_ratio(nan) 1,
    negatives counted as 0); p0 = inf (NaN levels) and a NaN or negative p_y (NaN or huge
    alpha) are refused too. 0 and +inf stay valid."""
    for call in (ddm_t_from_snr, vp_closed_form_t, target_level,
                 *[lambda k, r=r: match(k, r) for r in RULES]):  # fmt: skip
        with pytest.raises(ValueError, match=r"^snr holds NaN"):
            call(torch.tensor([1.0, math.nan], dtype=F64))
        with pytest.raises(ValueError, match="linear SNR must be >= 0"):
            call(-0.5)
    with pytest.raises(ValueError, match=r"^s2 must be >= 0"):
        ddm_t_from_noise_ratio(-0.5)
    assert ddm_t_from_snr(torch.tensor([0.0, math.inf], dtype=F64)).tolist() == [1.0, 0.0]
    assert float(vp_closed_form_t(0.0)) == 1000.0
    for call in (ddm_t_from_snr, target_level, vp_closed_form_t,
                 *[lambda k, p0, r=r: match(k, r, p0=p0) for r in RULES]):  # fmt: skip
        with pytest.raises(ValueError, match=r"^p0 must be > 0 and finite, got inf"):
            call(1.0, p0=math.inf)
    for r in RULES:
        with pytest.raises(ValueError, match=r"^p_y holds NaN"):
            match(torch.ones(2, dtype=F64), r, p_y=torch.tensor([1.0, math.nan], dtype=F64))
        with pytest.raises(ValueError, match=r"^p_y must be >= 0"):
            match(1.0, r, p_y=-1.0)
        # per-image powers, 0 included (clamped, as before), give the alpha of each alone
        m = match(torch.ones(2, dtype=F64), r, p_y=torch.tensor([4.0, 0.0], dtype=F64))
        assert float(m.alpha[0]) == float(match(1.0, r, p_y=4.0).alpha)
        assert m.alpha[1].isfinite()


def test_snr_helpers_keep_tensors_and_arrays_as_they_were():
    """db_to_linear / snr_to_no / snr_from_level / level_from_snr refuse bools now, and take
    tensors (float or integer dtypes), arrays and lists as before: float64, the values of
    their formulas on ``torch.as_tensor(x, dtype=float64)``."""
    x = torch.tensor([-10.0, 0.0, 3.0, math.inf], dtype=torch.float32)
    for v in (x, x.numpy(), x.tolist(), x.half(), torch.tensor([10, -3])):
        x64 = torch.as_tensor(v, dtype=F64)
        assert torch.equal(db_to_linear(v), torch.pow(10.0, x64 / 10.0))
        assert torch.equal(snr_to_no(v), torch.pow(10.0, -x64 / 10.0))
    d = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float32)
    assert snr_from_level(d).tolist() == [math.inf, 3.0, 0.0]
    assert level_from_snr(np.array([3.0, math.nan])).tolist() == [0.25, 1.0]  # NaN as no signal
    for call in (db_to_linear, snr_from_level, level_from_snr, snr_to_no):
        assert call(torch.zeros(2, dtype=torch.float32)).dtype == F64


def test_receiver_checks_its_options_at_every_call_with_the_functions_errors(monkeypatch):
    """DiffusionReceiver's options are checked when it is built and once per call (not twice:
    diffusion_receive re-checked them): one reassigned or changed in place afterwards (perturb
    sets t_factor) gets diffusion_receive's error at the call (an array p0 set to -1 in place
    was a bare 'math domain error', a skip_snr_db of '10' a raw TypeError). The floating-point
    check and half-precision upcast happen once per call, with the same error and results."""
    from semcom.diffusion import receiver

    den = gaussian_mmse(1.0)
    _, _, ft = received(3, (2, 4, 4), torch.tensor(0.3), 90)
    d = torch.full((3, 1, 1, 1), 0.3, dtype=F64)
    rx = DiffusionReceiver(den, steps=2)
    checked = []
    real_check = receiver.check_scalar_options
    monkeypatch.setattr(receiver, "check_scalar_options",
                        lambda *a: checked.append(a) or real_check(*a))  # fmt: skip
    out = rx(ft, d)
    rx(ft, d)
    assert len(checked) == 2  # once per call (was twice)
    assert torch.equal(out, diffusion_receive(ft, d, den, steps=2).f_hat)
    rx.t_factor = 0.5  # a reassigned option is used
    assert torch.equal(rx(ft, d), diffusion_receive(ft, d, den, steps=2, t_factor=0.5).f_hat)
    for attr, value, err, msg in (("t_factor", -1.0, ValueError, "t_factor must be >= 0"),
                                  ("p0", "1", TypeError, "p0 must be a real number"),
                                  ("steps", 0, ValueError, "steps must be an integer >= 1"),
                                  ("rule", "x", ValueError, "rule must be one of"),
                                  ("skip_snr_db", "10", TypeError, "skip_snr_db must be"),
                                  ("skip_snr_db", math.nan, ValueError, "skip_snr_db"),
                                  ):  # fmt: skip
        bad = DiffusionReceiver(den, steps=2)
        setattr(bad, attr, value)
        with pytest.raises(err, match=msg):
            bad(ft, d)
    p0 = torch.tensor(1.0, dtype=F64)  # a one-element tensor is a number too
    in_place = DiffusionReceiver(den, steps=2, p0=p0)
    in_place(ft, d)
    p0[...] = -1.0
    with pytest.raises(ValueError, match="p0 must be"):
        in_place(ft, d)
    # not floating point: refused at the call, also when every image skips the network
    for r in (rx, DiffusionReceiver(den, skip_snr_db=-20.0)):
        with pytest.raises(ValueError, match=r"takes a floating latent, got torch\.int64"):
            r(ft.long(), d)
    # half precision: computed in float32, answered in half, as the function
    half = DiffusionReceiver(den, steps=2, skip_snr_db=0.0)
    dd = torch.tensor([0.3, 0.6, 0.3], dtype=F64).view(3, 1, 1, 1)  # 3.7 dB skips, -1.8 does not
    got = half(ft.half(), dd)
    assert got.dtype == torch.float16 and half.info["n_skip_snr"] == 2
    assert torch.equal(got, half(ft.half().float(), dd).half())
    bf = half(ft.bfloat16(), dd)  # bfloat16 alike (it was computed in bfloat16)
    assert bf.dtype == torch.bfloat16
    assert torch.equal(bf, half(ft.bfloat16().float(), dd).bfloat16())
    fn = diffusion_receive(ft.half(), d, den, steps=2).f_hat
    assert fn.dtype == torch.float16
    assert torch.equal(fn, diffusion_receive(ft.half().float(), d, den, steps=2).f_hat.half())


def test_checks_take_one_number_in_any_numpy_form_and_nothing_else():
    """A count comes back a Python ``int`` (a NumPy string is not a number: TypeError, as a
    ``str``); one real number passes as a 0-d or one-element array, unsigned too, at the
    receiver as in the check; an empty or several-element tensor or array is a ValueError."""
    from semcom._checks import check_count, check_real

    for n in (np.int64(4), np.uint16(4), torch.tensor(4)):
        got = check_count(n, "steps")
        assert got == 4 and type(got) is int
    with pytest.raises(TypeError, match="steps must be an integer >= 1, got str_"):
        check_count(np.str_("4"), "steps")
    for x in (np.array(2.0), np.array([2.0]), np.array(2, dtype=np.uint8), np.float32(2.0)):
        check_real(x, "p0")
    assert DiffusionReceiver(gaussian_mmse(1.0), p0=np.array(2.0), t_factor=np.uint8(1)).p0 == 2
    for bad in (torch.tensor([]), np.array([]), torch.tensor([1.0, 2.0]), np.zeros((1, 2))):
        with pytest.raises(ValueError, match="p0 must be one real number"):
            check_real(bad, "p0")
        with pytest.raises(ValueError, match="p0 must be one real number"):
            DiffusionReceiver(gaussian_mmse(1.0), p0=bad)


def test_skip_snr_leaves_per_element_levels_to_the_receiver():
    """``skip_snr_db`` decides per image: per-element levels (fast fading), some of them above
    the skip SNR, go through the receiver whole, as without it."""
    d = torch.rand(2, 3, 4, 4, generator=gen(60), dtype=F64) * 0.3 + 0.01
    assert (d < 1 / 11).any() and (d > 1 / 11).any()  # elements on both sides of 10 dB
    _, _, ft = received(2, d.shape[1:], d, 61)
    for fading in ("naive", "waterfill"):
        want = DiffusionReceiver(gaussian_mmse(1.0), steps=2, fading=fading)(ft, d, gen(62))
        rec = DiffusionReceiver(gaussian_mmse(1.0), steps=2, fading=fading, skip_snr_db=10.0)
        assert torch.equal(rec(ft, d, gen(62)), want)


def test_stopped_receiver_answers_in_the_inputs_dtype_and_takes_t_factor_zero():
    """``stop_snr_db`` on a half / bfloat16 latent: the estimate comes back in that dtype, as
    without a stop; ``t_factor=0`` (in range: >= 0) is taken."""
    d = torch.tensor([0.5, 0.05]).view(2, 1, 1, 1)
    _, _, ft = received(2, (2, 4, 4), d, 77, dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        res = diffusion_receive(ft.to(dtype), d, gaussian_mmse(1.0), steps=2, stop_snr_db=10.0)
        assert res.f_hat.dtype == dtype
    assert DiffusionReceiver(gaussian_mmse(1.0), t_factor=0.0).t_factor == 0.0


def test_schedules_refuse_unknown_kinds_and_non_numbers_a_kind_ignores():
    """An unknown DDPM kind is a ValueError (it was drawn as the cosine schedule), and the
    numbers a kind ignores must still be real numbers (a cosine schedule with a text
    ``beta_start`` was accepted)."""
    with pytest.raises(ValueError, match="kind must be 'linear' or 'cosine', got 'cosin'"):
        DDPMSchedule("cosin")  # type: ignore[arg-type]
    for kw in ({"beta_start": "2"}, {"beta_end": None}):
        with pytest.raises(TypeError, match=f"^{next(iter(kw))} must be"):
            DDPMSchedule("cosine", **kw)
    for kw in ({"cosine_s": "0.1"}, {"max_beta": True}):
        with pytest.raises((TypeError, ValueError), match=f"^{next(iter(kw))} must"):
            DDPMSchedule("linear", **kw)


def test_a_python_nan_power_or_ratio_is_refused_as_a_tensor_one():
    """A NaN given as a Python float (checked without tensors) is refused as a NaN tensor is:
    p_y of every matching rule and the noise-to-signal ratio s2."""
    for r in RULES:
        with pytest.raises(ValueError, match=r"^p_y holds NaN"):
            match(1.0, r, p_y=math.nan)
    with pytest.raises(ValueError, match=r"^s2 holds NaN"):
        ddm_t_from_noise_ratio(math.nan)
    assert float(ddm_t_from_noise_ratio(math.inf)) == 1.0 and float(ddm_t_from_noise_ratio(0)) == 0


def test_a_python_int_too_large_for_a_float_is_a_value_error_naming_it():
    """An int beyond float64's range (p_y, s2) is a ValueError naming the argument, as for
    the SNR (it was a bare OverflowError of ``float(x)``); small ints are taken as before."""
    for r in RULES:
        with pytest.raises(ValueError, match=r"^p_y must hold .*float64's range"):
            match(1.0, r, p_y=10**400)
        assert match(1.0, r, p_y=2).level.item() == match(1.0, r, p_y=2.0).level.item()
    with pytest.raises(ValueError, match=r"^s2 .*float64's range"):
        ddm_t_from_noise_ratio(10**400)


def test_names_moved_out_of_samplers_still_import_from_it_with_a_warning():
    """The receiver and the fast-fading sampler moved to modules of their own; their old
    import path gives the same objects with a DeprecationWarning naming the new one."""
    import importlib

    import semcom.diffusion as package
    from semcom.diffusion import samplers
    from semcom.diffusion.samplers import _MOVED

    assert "DiffusionReceiver" in _MOVED and "waterfill_sample" in _MOVED
    for name, module in _MOVED.items():
        new = getattr(importlib.import_module(f"semcom.diffusion.{module}"), name)
        with pytest.warns(DeprecationWarning, match=rf"semcom\.diffusion\.{module}\.{name}"):
            assert getattr(samplers, name) is new
        if name in package.__all__:
            assert getattr(package, name) is new
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = samplers.nothing
    with pytest.warns(DeprecationWarning, match=r"also semcom\.diffusion\.DiffusionReceiver"):
        from semcom.diffusion.samplers import DiffusionReceiver  # noqa: F401
