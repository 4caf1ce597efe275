"""SNR estimation: the moment estimator (docs/math.md §4) and its use in the link."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcom.channels import Channel, pack
from semcom.estimation import level_from_gamma, moment_snr


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 10.0, 20.0])
def test_moment_estimator_awgn_accurate(snr_db: float) -> None:
    # 1e5 symbols per image: the estimate is within 0.2 dB (docs/math.md §4: error <= 0.2 dB).
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


def test_moment_estimator_spread_is_the_noise_terms_only() -> None:
    """docs/math.md §4: per-image unit power makes ``mean_k |z_k|^2 = 1`` exactly, so only the
    noise terms of ``mean |y|^2`` vary: ``std(gamma_hat) = sqrt(1 + 2 gamma) / sqrt(M)`` for M
    symbols, whatever the latent distribution (heavy-tailed cubes of Gaussians here; a power
    normalised per batch instead adds their power spread, ~3x the std at 0 dB)."""
    b, m = 400, 2000
    z = pack(torch.randn(b, 2 * m, generator=_gen(11), dtype=torch.float64) ** 3).z
    for snr_db in (0.0, 10.0):
        y, state = Channel("awgn")(z, snr_db, _gen(12))
        g = moment_snr(y, state.no)
        gamma = 10 ** (snr_db / 10)
        spread = math.sqrt(1 + 2 * gamma) / math.sqrt(m)
        # the sample std of 400 estimates is within ~3.5 % (1 sigma) of the true one
        assert g.std().item() / spread == pytest.approx(1.0, abs=0.15)
        assert abs(g.mean().item() - gamma) < 4 * spread / math.sqrt(b)  # unbiased above 0


def test_moment_estimator_rejects_real_input() -> None:
    with pytest.raises(ValueError, match="complex"):
        moment_snr(torch.ones(2, 3), torch.ones(2))


def test_link_with_moment_snr_close_to_known(identity_codec) -> None:
    from semcom.link import AnalogLink

    Identity = identity_codec
    x = torch.rand(2, 3, 64, 64, generator=_gen(8))
    known = AnalogLink(Identity()).transmit(x, Channel("awgn"), 5.0, _gen(9)).images
    moment = AnalogLink(Identity(), snr_source="moment")
    est = moment.transmit(x, Channel("awgn"), 5.0, _gen(9)).images
    # same noise; only d differs slightly (estimate from 6144 symbols)
    assert (known - est).abs().max() < 0.02
    assert not torch.equal(known, est)
    with pytest.raises(ValueError, match="snr_source"):
        AnalogLink(Identity(), snr_source="oracle")


@pytest.mark.parametrize("csi", ["perfect", "estimated"])
@pytest.mark.parametrize("channel", ["awgn", "rayleigh-slow"])
def test_link_scores_the_snr_estimate_and_tells_the_decoder(
    channel: str, csi: str, identity_codec
) -> None:
    from semcom.link import AnalogLink

    x = torch.rand(3, 3, 64, 64, generator=_gen(10))
    snr = torch.tensor([-5.0, 5.0, 15.0], dtype=torch.float64)
    codec = identity_codec(snr_adaptive=True)
    link = AnalogLink(codec, snr_source="moment")
    ch = Channel(channel, csi=csi, pilots=4 if csi == "estimated" else None)
    tx = link.transmit(x, ch, snr, _gen(11))
    err = tx.snr_error_db
    assert err is not None and err.shape == (3,)
    # the true equivalent SNR: the nominal one on AWGN, |h|^2 times it on slow fading, from
    # the true h also when the receiver equalises with a pilot estimate of it (it was scored
    # against the equaliser's own SNR from the estimate: errors of 1-6 dB with 4 pilots)
    y_state = ch(pack(x.reshape(3, -1)).z, snr, _gen(11))[1]
    true_db = 10 * torch.log10(y_state.h.abs().pow(2)[:, 0].double() / y_state.no.double())
    # the decoder is told the SNR of the latent it reads: with a pilot estimate of h its
    # error counts as noise (N0 + h_err), as in equalize; the score is of the estimate itself
    told = codec.told[-1].double()
    if csi == "estimated":
        no, h_err = y_state.no.double(), y_state.h_err.double()
        told = told - 10 * torch.log10(no / (no + h_err))
    assert torch.allclose(told - true_db, err.float().double(), atol=1e-3)
    # 6144 symbols per image: the moment estimate is within 1 dB here (not 0: it is estimated)
    assert torch.all(err.abs() < 1.0) and torch.all(err != 0)
    if channel == "awgn":
        assert torch.allclose(told, snr, atol=1.0)
    # the known SNR is not scored; the decoder is told the SNR of the latent it reads:
    # exactly the nominal one on AWGN, |h|^2 times it on slow fading (perfect CSI)
    known = AnalogLink(codec).transmit(x, Channel(channel), snr, _gen(11))
    assert known.snr_error_db is None
    h = Channel(channel)(pack(x.reshape(3, -1)).z, snr, _gen(11))[1].h[:, 0]
    assert torch.equal(codec.told[-1], (snr + 10 * torch.log10(h.abs().double() ** 2)).float())
    if channel == "awgn":
        assert torch.equal(codec.told[-1], snr.float())
    # a noiseless link (SNR +inf): estimated +inf, both clamped to 100 dB, error 0 (not NaN)
    inf = link.transmit(x[:1], Channel(channel), float("inf"), _gen(11)).snr_error_db
    assert inf is not None and inf.tolist() == [0.0]
    # fast fading: a noise level per symbol, which a per-image estimate would discard: refused
    with pytest.raises(ValueError, match="per symbol"):
        link.transmit(x, Channel("rayleigh-fast"), snr, _gen(11))


# ------------------------------------------------------------- learned estimator (eq. 21)
from semcom.estimation.learned import (  # noqa: E402
    DB_PER_NEPER,
    SNREstimator,
    SNREstimatorConfig,
    load_snr_estimator,
)

CE = 4  # latent channels of the fake codec latents below


def _smooth_latents(n: int, seed: int) -> list[torch.Tensor]:
    """Spatially smooth latents (bilinear upsampling of a coarse field): the noise is white, so
    the high-frequency energy tells the SNR, as for real codec latents."""
    g = _gen(seed)
    out = []
    for i in range(n):
        h, w = 12 + 2 * (i % 3), 14 + 2 * (i % 2)
        coarse = torch.randn(1, CE, h // 4 + 1, w // 4 + 1, generator=g)
        out.append(torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")[0])
    return out


@pytest.fixture(scope="module")
def est_cache(weights_root, tmp_path_factory):
    from semcom.diffusion.latents import save_latents
    from semcom.fingerprint import codec_fingerprint
    from semcom.train.denoiser import codec_for, latent_cache_path

    root = tmp_path_factory.mktemp("cache")
    fp = codec_fingerprint(codec_for("vae", None))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        save_latents(
            _smooth_latents(24, 0), latent_cache_path("vae", None, "bsds500-train", fp), {}
        )
        save_latents(
            _smooth_latents(8, 1),
            latent_cache_path("vae", None, "bsds500-val", fp, flips=False),
            {},
        )
        yield root


@pytest.fixture(scope="module")
def est_run(est_cache, tmp_path_factory):
    """A short ``semcom train snr-estimator`` run on the smooth fake latents."""
    from semcom.cli import main as semcom_main

    out = tmp_path_factory.mktemp("est")
    rc = semcom_main(
        ["train", "snr-estimator", "--codec", "vae", "--crop", "8", "--repeats", "32",
         "--width", "16", "--snr-range=-15:25", "--batch-size", "32", "--epochs", "5",
         "--lr", "3e-3", "--quiet", "--seed", "0", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    return out


@pytest.mark.parametrize("size", [(81, 121), (128, 192)])
def test_scale_stats_white_noise_floor_is_independent_of_the_size(size) -> None:
    """White noise keeps 1/s^2 of its power in s x s block means, at every latent size (an
    odd-sized BSDS latent and a Kodak one alike; a size-dependent floor biases the estimator
    across data sets); the stats ignore the input scale and are higher for spatially correlated
    latents; a latent smaller than s uses a block of its own size."""
    from semcom.estimation.learned import SCALES, scale_stats

    h, w = size
    noise = torch.randn(16, CE, h, w, generator=_gen(21))
    got = scale_stats(noise).mean(0)
    want = torch.tensor([-2 * math.log(s) for s in SCALES])
    # relative error of the power of n white block means: about sqrt(2 / n)
    n = [16 * CE * (h // s) * (w // s) for s in SCALES]
    tol = torch.tensor([4 * math.sqrt(2 / k) for k in n])
    assert ((got - want).abs() <= tol).all(), (got, want)
    torch.testing.assert_close(scale_stats(7.0 * noise), scale_stats(noise), rtol=1e-4, atol=1e-4)
    coarse = torch.randn(4, CE, h // 8 + 1, w // 8 + 1, generator=_gen(22))
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")
    assert (scale_stats(smooth).mean(0) > want + 3 * tol).all()
    tiny = scale_stats(torch.randn(2, CE, 5, 7, generator=_gen(24)))
    assert tiny.shape == (2, len(SCALES)) and torch.isfinite(tiny).all()


def test_estimator_with_scale_stats_reads_them_and_old_configs_do_not() -> None:
    cfg = SNREstimatorConfig(channels=CE, width=8, blocks=1, scale_stats=True, feature_norm=True)
    m = SNREstimator(cfg).eval()
    x = torch.randn(2, CE, 20, 24, generator=_gen(23))
    assert cfg.n_features == 2 * 8 + 4 and m.features(x).shape == (2, 20)
    assert m.feat_mean.shape == (20,) and m(x).shape == (2,)
    old = SNREstimatorConfig.from_dict({"channels": CE, "width": 8, "blocks": 1})
    assert not old.scale_stats and old.n_features == 16


def test_estimator_logit_is_log_snr_and_scale_invariant() -> None:
    torch.manual_seed(0)
    m = SNREstimator(SNREstimatorConfig(channels=CE, width=8, blocks=1)).eval()
    x = torch.randn(3, CE, 9, 11, generator=_gen(1))
    logit = m(x)
    assert logit.shape == (3,)
    gamma, clamped = m.estimate(x)
    torch.testing.assert_close(10 * torch.log10(gamma).float(), DB_PER_NEPER * logit)
    assert not clamped.any()
    # zeta = sigmoid(logit) = gamma / (1 + gamma): the paper's output a in (0, 1)
    zeta = torch.sigmoid(logit).double()
    torch.testing.assert_close(zeta, gamma / (1 + gamma), rtol=1e-5, atol=0)
    # the received power carries no information: the estimate ignores the input scale
    torch.testing.assert_close(m(37.0 * x), logit, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=f"\\[B, {CE}, h, w\\]"):
        m(torch.randn(2, CE + 1, 4, 4))


def test_estimator_clamps_out_of_range_and_nan() -> None:
    m = SNREstimator(SNREstimatorConfig(channels=CE, width=8, blocks=1, snr_range=(-10, 20)))
    x = torch.randn(2, CE, 6, 6, generator=_gen(2))
    with torch.no_grad():
        m.head[-1].bias.fill_(100.0)  # 434 dB
    gamma, clamped = m.estimate(x)
    assert clamped.all() and torch.allclose(gamma, torch.full_like(gamma, 100.0))
    with torch.no_grad():
        m.head[-1].bias.fill_(-100.0)
    gamma, clamped = m.estimate(x)
    assert clamped.all() and torch.allclose(gamma, torch.full_like(gamma, 0.1))
    gamma, clamped = m.estimate(torch.full((1, CE, 6, 6), float("nan")))
    assert clamped.all() and torch.isfinite(gamma).all()
    gamma, _ = m.estimate(torch.zeros(1, CE, 6, 6))  # silent input: finite, clamped
    assert torch.isfinite(gamma).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_estimator_runs_in_its_own_dtype(dtype: torch.dtype) -> None:
    """An estimator converted to float64 or bfloat16 reads a float32 or float64 latent (as the
    link hands it) and gives the float32 network's estimate to its rounding, not a dtype
    error from its first convolution."""
    torch.manual_seed(0)
    cfg = SNREstimatorConfig(channels=CE, width=8, blocks=1, scale_stats=True, feature_norm=True)
    m = SNREstimator(cfg).eval()
    x = torch.randn(3, CE, 9, 11, generator=_gen(4))
    want, _ = m.estimate(x)
    m.to(dtype)
    tol = 1e-5 if dtype == torch.float64 else 0.1  # dB
    for xin in (x, x.double()):
        got, clamped = m.estimate(xin)
        assert got.dtype == torch.float64 and not clamped.any()
        err_db = (10 * torch.log10(got / want)).abs().max().item()
        assert err_db < tol, (xin.dtype, err_db)


def test_trained_estimator_accuracy(est_run) -> None:
    """A few epochs on smooth latents: RMSE over -10..20 dB well below the 8.7 dB of a
    constant guess; the loaded checkpoint reproduces the run's validation."""

    card = json.loads((est_run / "card.json").read_text())
    assert card["task"] == "snr-estimator" and card["model"] == "snr-estimator"
    assert len(card["history"]) == 5
    assert card["val_metrics"]["rmse_db"] < 3.0, card["val_metrics"]
    m = load_snr_estimator(est_run, codec="vae", latent_channels=CE)
    torch.manual_seed(0)
    untrained = SNREstimator(m.config).eval()
    from semcom.diffusion.latents import unit_power
    from semcom.train.snr_estimator import received

    def rmse(model: SNREstimator) -> float:
        errs = []
        for i, f in enumerate(_smooth_latents(8, 1)):
            for snr in (-10.0, 0.0, 10.0, 20.0):
                y = received(unit_power(f[None]), torch.tensor([snr]), _gen(100 + i))
                errs.append(float(10 * torch.log10(model.estimate(y)[0])) - snr)
        return math.sqrt(sum(e * e for e in errs) / len(errs))

    trained, base = rmse(m), rmse(untrained)
    assert trained < 3.5 and trained < 0.4 * base, (trained, base)


def test_load_estimator_checks(est_run, tmp_path) -> None:
    with pytest.raises(ValueError, match="codec 'vae', not 'deepjscc'"):
        load_snr_estimator(est_run, codec="deepjscc")
    with pytest.raises(ValueError, match=f"{CE}-channel latents, the codec has 32"):
        load_snr_estimator(est_run, codec="vae", latent_channels=32)
    with pytest.raises(ValueError, match="not a snr-estimator checkpoint"):
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(1)}, str(tmp_path / "x.safetensors"), {"task": "denoiser"})
        load_snr_estimator(tmp_path / "x.safetensors")


def test_export_estimator_and_link(est_run, tmp_path) -> None:
    """Zoo export round trip (fp16, same estimates); a link with the learned SNR source needs
    an estimator, and its estimate follows the SNR within the trained range."""
    from semcom.codecs.base import Codec
    from semcom.diffusion.checkpoint import export_latent_model, find_latent_model
    from semcom.link import AnalogLink

    zoo = tmp_path / "zoo"
    export_latent_model(est_run, "est-test", "snr-estimator", "estimator_config", zoo_dir=zoo)
    entry = find_latent_model("snr-estimator", "vae", zoo_dir=zoo)
    m = load_snr_estimator(entry.weights, codec="vae", latent_channels=CE)
    assert entry.card["model"] == "snr-estimator" and entry.card["dtype"] == "float16"

    class Smooth(Codec):
        """4-channel latent = 4x4 average pools of the image's first channels (smooth)."""

        name = "smooth"

        def _encode(self, x, snr_db):
            lat = torch.nn.functional.avg_pool2d(x, 4)
            return torch.cat([lat, lat[:, :1]], dim=1) - 0.5

        def _decode(self, latent, snr_db):
            return torch.nn.functional.interpolate(latent[:, :3] + 0.5, scale_factor=4)

        def latent_shape(self, h, w):
            return (CE, h // 4, w // 4)

    with pytest.raises(ValueError, match="estimator"):
        AnalogLink(Smooth(), snr_source="learned")
    link = AnalogLink(Smooth(), snr_source="learned", estimator=m)
    x = torch.nn.functional.interpolate(torch.rand(2, 3, 4, 4, generator=_gen(3)), size=(64, 64),
                                        mode="bilinear")  # fmt: skip
    t = link.transmit(x, Channel("awgn"), -30.0, _gen(4))
    assert torch.isfinite(t.images).all() and "snr_clamped" in t.info
    # the estimator's clamp flags reach the transmission per image (said by -v)
    assert t.counts["snr_clamped"].sum() == t.info["snr_clamped"]
    real = m.estimate
    m.estimate = lambda f: (real(f)[0], torch.tensor([True, False]))
    t = link.transmit(x, Channel("awgn"), -30.0, _gen(4))
    assert t.counts["snr_clamped"].tolist() == [1, 0] and t.info["snr_clamped"] == 1
    m.estimate = real
    # the fp16 export estimates what the run's model estimates
    lat = _smooth_latents(1, 9)[0][None]
    run_model = load_snr_estimator(est_run, codec="vae")
    assert abs(float(m(lat)) - float(run_model(lat))) < 0.01  # logit: 0.04 dB
    # through the link (a codec it was not trained on) the estimate still follows the SNR,
    # stays in the trained range and is scored against the true SNR
    est = []
    for snr in (-30.0, 0.0, 10.0):
        t = link.transmit(x, Channel("awgn"), snr, _gen(5))
        assert t.snr_error_db is not None and t.snr_error_db.shape == (2,)
        est.append(snr + t.snr_error_db)
    assert (est[0] < est[1]).all() and (est[1] < est[2]).all()
    assert (est[0] >= m.config.snr_range[0] - 1e-9).all()


# ------------------------------------------- calibration of the head on whole latents
def test_calibration_stage(est_run, tmp_path, monkeypatch) -> None:
    """``--calibrate RUN``: the CNN of RUN stays bit-identical, a new standardised head (feature
    mean / std of the bank as buffers) is fitted, the architecture comes from RUN, the card
    names RUN and its hash, and validation gets no worse; shipped, the card's command chains
    both stages and the hours add up. ``--quiet`` silences the feature bank's bar too."""
    import tqdm as tqdm_module

    from semcom.cli import main as semcom_main
    from semcom.diffusion.checkpoint import export_latent_model
    from semcom.zoo import sha256_file

    real_tqdm, bank_bars = tqdm_module.tqdm, []

    def spy(*a, **k):
        if k.get("desc") == "calibration features":
            bank_bars.append(k.get("disable"))
        return real_tqdm(*a, **k)

    monkeypatch.setattr(tqdm_module, "tqdm", spy)

    out = tmp_path / "cal"
    rc = semcom_main(
        ["train", "snr-estimator", "--codec", "vae", "--calibrate", str(est_run), "--draws", "4",
         "--head-depth", "2", "--head-width", "24", "--width", "99", "--snr-range=-15:25",
         "--batch-size", "16", "--epochs", "20", "--lr", "3e-3", "--quiet", "--seed", "0",
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    assert bank_bars == [True] * 4  # one bar per draw, each disabled (it showed before)
    monkeypatch.undo()
    before = load_snr_estimator(est_run, codec="vae")
    after = load_snr_estimator(out, codec="vae")
    c = after.config
    assert (c.width, c.head_depth, c.head_width, c.feature_norm) == (16, 2, 24, True)
    for name, p in before.named_parameters():
        if not name.startswith("head."):
            assert torch.equal(p, dict(after.named_parameters())[name]), name
    assert len(after.head) == 5 and not torch.equal(after.feat_std, torch.ones_like(after.feat_std))
    card = json.loads((out / "card.json").read_text())
    assert card["init"] == str(est_run) and card["config"]["calibrate"] == str(est_run)
    assert card["init_sha256"] == sha256_file(est_run / "model.safetensors")
    assert card["config"]["width"] == 16
    init_card = json.loads((est_run / "card.json").read_text())
    assert card["val_metrics"]["rmse_db"] <= init_card["val_metrics"]["rmse_db"] + 0.2, (
        card["val_metrics"], init_card["val_metrics"])  # fmt: skip

    zoo = tmp_path / "zoo"
    path = export_latent_model(out, "est-cal", "snr-estimator", "estimator_config", zoo_dir=zoo)
    zc = json.loads(path.read_text())
    assert zc["command"] == f"{init_card['command']} && {card['command']}"
    assert zc["continued_from"]["sha256"] == card["init_sha256"]
    assert zc["hours"] == pytest.approx(init_card["hours"] + card["hours"], abs=1e-4)
    assert zc["stage_hours"] == card["hours"]
    shipped = load_snr_estimator(path.with_suffix(".safetensors"), codec="vae")
    x = _smooth_latents(2, 9)[0][None]
    assert abs(float(shipped(x) - after(x))) < 0.05  # fp16 copy: same estimate (ln units)
    # an init whose weights changed since is not claimed as the first stage
    (est_run / "model.safetensors").rename(tmp_path / "moved.safetensors")
    try:
        path = export_latent_model(out, "est-cal2", "snr-estimator", "estimator_config",
                                   zoo_dir=zoo)  # fmt: skip
        zc = json.loads(path.read_text())
        assert "continued_from" not in zc and zc["init"]["ref"] == str(est_run)
        assert zc["command"] == card["command"]
    finally:
        (tmp_path / "moved.safetensors").rename(est_run / "model.safetensors")


def test_estimator_feats_input_and_head_options() -> None:
    torch.manual_seed(0)
    m = SNREstimator(SNREstimatorConfig(channels=CE, width=8, blocks=1, head_depth=3,
                                        head_width=5, feature_norm=True)).eval()  # fmt: skip
    x = torch.randn(3, CE, 9, 11, generator=_gen(1))
    with torch.no_grad():
        m.feat_mean.fill_(0.3)
        m.feat_std.fill_(2.0)
    feats = m.features(x)
    assert feats.shape == (3, 16)
    torch.testing.assert_close(m(feats=feats), m(x))
    manual = m.head((feats - 0.3) / 2.0).squeeze(1)
    torch.testing.assert_close(m(x), manual)
    assert [type(layer).__name__ for layer in m.head].count("Linear") == 4
    with pytest.raises(ValueError, match="latents or feats"):
        m()
    with pytest.raises(ValueError, match="depth >= 1"):
        SNREstimator(SNREstimatorConfig(channels=CE, head_depth=0))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--draws", "0"], "--draws must be >= 1"),
        (["--head-depth", "0"], "depth >= 1 and width >= 0 needed"),
        (["--calibrate", "no-such-run"], "neither a zoo name"),
    ],
)
def test_calibration_bad_options(argv, message, est_cache, tmp_path, capsys) -> None:
    from semcom.cli import main as semcom_main

    rc = semcom_main(["train", "snr-estimator", "--codec", "vae", *argv, "--epochs", "1",
                      "--quiet", "--out", str(tmp_path / "r")])  # fmt: skip
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_calibrate_refuses_other_codec(est_run, tmp_path, capsys) -> None:
    from semcom.cli import main as semcom_main

    rc = semcom_main(["train", "snr-estimator", "--codec", "deepjscc", "--cbr", "1/16",
                      "--calibrate", str(est_run), "--epochs", "1", "--quiet",
                      "--out", str(tmp_path / "r")])  # fmt: skip
    assert rc == 2
    assert "codec 'vae', not 'deepjscc'" in capsys.readouterr().err


def test_calibrate_refuses_a_cnn_of_other_codec_weights(est_run, tmp_path, capsys) -> None:
    """The CNN's features were learnt on one codec's latents: calibrating it on the latents of
    other weights of the same codec (a retrained or longer-trained one) is refused."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    from semcom.cli import main as semcom_main

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(est_run / "card.json", other / "card.json")
    with safe_open(str(est_run / "model.safetensors"), framework="pt") as f:
        meta = {**f.metadata(), "codec_fingerprint": "0123456789ab"}
        weights = {k: f.get_tensor(k) for k in f.keys()}
    save_file(weights, str(other / "model.safetensors"), meta)
    rc = semcom_main(["train", "snr-estimator", "--codec", "vae", "--calibrate", str(other),
                      "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")])  # fmt: skip
    assert rc == 2
    assert "codec weights 0123456789ab" in capsys.readouterr().err


def test_calibration_resume_matches_uninterrupted(est_run, tmp_path) -> None:
    """A calibration run stopped after its first epoch and resumed (options from its card)
    ends at the weights of the uninterrupted run: the feature bank is rebuilt from the seed."""
    from safetensors.torch import load_file

    from semcom.cli import main as semcom_main

    common = ["train", "snr-estimator", "--codec", "vae", "--calibrate", str(est_run),
              "--draws", "4", "--head-depth", "2", "--snr-range=-15:25", "--batch-size", "16",
              "--epochs", "2", "--quiet", "--seed", "3"]  # fmt: skip
    assert semcom_main([*common, "--out", str(tmp_path / "a")]) == 0
    assert semcom_main([*common, "--max-steps", "6", "--out", str(tmp_path / "b")]) == 0
    assert semcom_main(["train", "snr-estimator", "--resume", str(tmp_path / "b"), "--quiet",
                        "--max-steps", "1000"]) == 0  # fmt: skip
    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and "feat_mean" in a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_latent_tasks_train_without_validation(est_cache, tmp_path, monkeypatch) -> None:
    """``--val-data none`` (quick runs of the latent tasks): no validation set is encoded or
    scored, the run trains and its card has no validation metrics."""
    from semcom.cli import main as semcom_main
    from semcom.train import denoiser

    monkeypatch.setenv("XDG_CACHE_HOME", str(est_cache))
    real = denoiser.get_latents

    def only_train(codec, cbr, data, *a, **k):
        assert data != "none", "validation latents were requested"
        return real(codec, cbr, data, *a, **k)

    monkeypatch.setattr(denoiser, "get_latents", only_train)
    out = tmp_path / "r"
    argv = ["train", "snr-estimator", "--codec", "vae", "--crop", "8", "--width", "8",
            "--val-data", "none", "--epochs", "1", "--quiet", "--out", str(out)]  # fmt: skip
    assert semcom_main(argv) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["epoch"] == 1 and not card.get("val_metrics")


def test_moment_estimator_takes_one_n0_for_all_and_refuses_bad_ones() -> None:
    """One N0 for the batch (a number, as a notebook writes it) is the same as N0 per image;
    a negative or mismatched N0 is one ValueError, not an attribute error."""
    y = torch.randn(3, 500, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))
    per_image = moment_snr(y, torch.full((3,), 0.1, dtype=torch.float64))
    assert torch.equal(moment_snr(y, 0.1), per_image)
    for bad in (-0.1, torch.tensor([0.1, 0.2])):
        with pytest.raises(ValueError, match="N0 >= 0, one per image"):
            moment_snr(y, bad)
    # gamma < 0 never comes from an estimator; as a number it counts as no signal (d = 1)
    assert float(level_from_gamma(-1.0)) == 1.0 and float(level_from_gamma(3.0)) == 0.25


def test_calibration_resume_refuses_a_changed_cnn(est_run, tmp_path, capsys) -> None:
    """The head of a calibration run was fitted on its frozen CNN's features: resuming after
    the calibrated run changed (retrained, resumed) is refused, not silently mixed."""
    import shutil

    from safetensors.torch import load_file, save_file

    from semcom.cli import main as semcom_main

    src = tmp_path / "src"
    shutil.copytree(est_run, src)
    out = tmp_path / "cal"
    assert semcom_main(["train", "snr-estimator", "--codec", "vae", "--calibrate", str(src),
                        "--draws", "2", "--batch-size", "16", "--epochs", "2", "--max-steps", "2",
                        "--quiet", "--out", str(out)]) == 0  # fmt: skip
    w = load_file(str(src / "model.safetensors"))
    name = next(iter(w))
    w[name] = w[name] + 1e-3
    save_file(w, str(src / "model.safetensors"), metadata=dict(_metadata(est_run)))
    capsys.readouterr()
    assert semcom_main(["train", "snr-estimator", "--resume", str(out), "--quiet"]) == 2
    assert "is no longer the checkpoint it started from" in capsys.readouterr().err


def _metadata(run) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        return f.metadata() or {}


def test_find_latent_model_keeps_the_shipped_entry(monkeypatch) -> None:
    """A user's denoiser trained on the TAEF2 latents (its card records the codec fingerprint)
    silently became vae+dm's default: the shipped one records none (trained before they were
    recorded). An entry recording none counts as trained on the weights, shipped ones first;
    a codec variant still finds its own entry past a shipped one of other weights."""
    from types import SimpleNamespace

    import semcom.zoo as zoo
    from semcom.diffusion.checkpoint import find_latent_model

    def entry(name, fingerprint=None):
        codec = {"name": "vae", "cbr": None}
        if fingerprint:
            codec["fingerprint"] = fingerprint
        return SimpleNamespace(name=name, model="denoiser", card={"codec": codec})

    shipped, other, mine = entry("shipped"), entry("other", "f0"), entry("mine", "f1")
    monkeypatch.setattr(zoo, "list_checkpoints", lambda zoo_dir=None: [shipped, mine])
    assert find_latent_model("denoiser", "vae", fingerprint="f1") is shipped
    monkeypatch.setattr(zoo, "list_checkpoints", lambda zoo_dir=None: [other, mine])
    assert find_latent_model("denoiser", "vae", fingerprint="f1") is mine
    assert find_latent_model("denoiser", "vae", fingerprint="f9") is other  # none: the first


@pytest.mark.parametrize("pilots", [2, 16])
def test_moment_snr_with_estimated_csi_reports_the_latents_noise_level(identity_codec, pilots):
    """With a pilot estimate of h the equalised latent also carries the estimation error: the
    moment source's noise level d must count it (as equalize does), else the receiver is told
    a cleaner latent than it reads (2 pilots at 20 dB: mean d 0.042 for an actual LMMSE error
    of 0.059). Mean d over 400 images within 8 % of the mean actual error."""
    from semcom.link import AnalogLink, LMMSEReceiver

    seen: dict = {}

    class Spy(LMMSEReceiver):
        def __call__(self, f_tilde, d, generator=None):
            seen["f_tilde"], seen["d"] = f_tilde, d
            return super().__call__(f_tilde, d, generator)

    x = torch.rand(400, 3, 16, 16, generator=_gen(3))
    link = AnalogLink(identity_codec(), receiver=Spy(), snr_source="moment")
    link.transmit(x, Channel("rayleigh-slow", csi="estimated", pilots=pilots), 20.0, _gen(4))
    f = x.reshape(400, -1).double()
    f = f / f.pow(2).mean(-1, keepdim=True).sqrt()
    d = seen["d"].double().reshape(400, 1)
    err = ((1 - d).sqrt() * seen["f_tilde"].double().reshape(400, -1) - f).pow(2).mean()
    assert abs(float(d.mean()) / float(err) - 1) < 0.08, (float(d.mean()), float(err))


def test_learned_estimator_features_are_mean_and_log_std_of_its_maps():
    """The pooled features the shipped weights expect: per CNN map its mean and the log of its
    (population) standard deviation over the latent, the input RMS-normalised first."""
    from semcom.estimation.learned import load_snr_estimator

    est = load_snr_estimator("snr-estimator-deepjscc-c6-bsds")
    f = torch.randn(2, 6, 20, 24, generator=_gen(31)) * 3.0
    with torch.no_grad():
        feats = est.features(f)
        x = f / f.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
        h = est.blocks(torch.nn.functional.leaky_relu(est.stem(x), 0.1))
    w = h.shape[1]
    torch.testing.assert_close(feats[:, :w], h.mean(dim=(2, 3)), rtol=0, atol=1e-5)
    log_std = torch.log(h.std(dim=(2, 3), unbiased=False))
    torch.testing.assert_close(feats[:, w : 2 * w], log_std, rtol=0, atol=1e-3)


def test_estimator_nan_estimate_falls_to_the_low_end_of_its_range() -> None:
    """A NaN logit (NaN weights or input) says nothing about the SNR: the estimate is the low
    end of the trained range (-10 dB: gamma 0.1, the receiver assumes the most noise), flagged
    as clamped; +inf goes to the high end (20 dB: gamma 100)."""
    m = SNREstimator(SNREstimatorConfig(channels=CE, width=8, blocks=1, snr_range=(-10, 20)))
    x = torch.randn(3, CE, 6, 6, generator=_gen(4))
    gamma, clamped = m.estimate(torch.full((2, CE, 6, 6), float("nan")))
    assert gamma.tolist() == pytest.approx([0.1, 0.1], rel=1e-12) and clamped.all()
    with torch.no_grad():
        m.head[-1].bias.fill_(float("nan"))
    gamma, clamped = m.estimate(x)
    assert gamma.tolist() == pytest.approx([0.1] * 3, rel=1e-12) and clamped.all()
    with torch.no_grad():
        m.head[-1].bias.fill_(float("inf"))
    gamma, clamped = m.estimate(x)
    assert gamma.tolist() == pytest.approx([100.0] * 3, rel=1e-12) and clamped.all()


def test_estimator_validation_errors_are_root_mean_squares() -> None:
    """``train snr-estimator`` validation: per SNR the root mean square of the per-latent dB
    errors (+3 and -4 dB at 0 dB: sqrt(12.5) = 3.54, not their mean -0.5 or mean absolute
    3.5), and overall that of all errors: sqrt((9 + 16 + 1 + 49) / 4) = 4.33 dB."""
    from types import SimpleNamespace

    from semcom.train.snr_estimator import SNREstimatorTask

    class Scripted(SNREstimator):
        """Says the SNRs (dB) of a script, one a call, whatever it is shown."""

        def __init__(self, said: list[float]) -> None:
            super().__init__(SNREstimatorConfig(channels=CE, width=2, blocks=0))
            self.said = list(said)

        def estimate(self, f_tilde: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            db = torch.tensor([self.said.pop(0)], dtype=torch.float64)
            return 10 ** (db / 10), torch.tensor([False])

    # the task's validation reads only its options and validation latents
    task = SimpleNamespace(config=SimpleNamespace(val_snrs=[0.0, 10.0], seed=0),
                           _val=_smooth_latents(2, 5))  # fmt: skip
    model = Scripted([3.0, -4.0, 11.0, 17.0])  # errors +3, -4 at 0 dB; +1, +7 at 10 dB
    out = SNREstimatorTask.validate(task, model, None)
    assert out["rmse_db@0dB"] == pytest.approx(math.sqrt(12.5), rel=1e-9)
    assert out["rmse_db@10dB"] == pytest.approx(5.0, rel=1e-9)
    assert out["rmse_db"] == pytest.approx(math.sqrt(75 / 4), rel=1e-9)
    assert model.said == []


def test_moment_snr_known_values_per_image() -> None:
    """gamma_hat = mean_k |y_k|^2 / N0 - 1 per image (docs/math.md §4), by hand: |3+4j|^2 = 25 and
    0 average 12.5 (N0 1: 11.5); |j|^2 = |1|^2 = 1 at N0 0.5: 1; power 0.02 at N0 1: below
    the noise, clamped to 0; N0 = 0: +inf."""
    y = torch.tensor(
        [[3 + 4j, 0j], [1j, 1 + 0j], [0.1 + 0.1j, 0.1 - 0.1j], [1 + 0j, 1 + 0j]],
        dtype=torch.complex128,
    )
    got = moment_snr(y, torch.tensor([1.0, 0.5, 1.0, 0.0], dtype=torch.float64))
    assert got.dtype == torch.float64
    assert got[:3].tolist() == pytest.approx([11.5, 1.0, 0.0], abs=1e-12)
    assert math.isinf(float(got[3])) and float(got[3]) > 0
    with pytest.raises(ValueError, match="N0 >= 0"):
        moment_snr(y, torch.tensor([1.0, math.nan, 1.0, 1.0]))


# ------------------------------------------------------------------ properties (hypothesis)
@settings(max_examples=20, deadline=None)
@given(
    snr_db=st.lists(st.floats(-10.0, 30.0), min_size=1, max_size=3),
    gain_db=st.floats(-10.0, 10.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_moment_estimator_is_consistent(snr_db, gain_db, seed):
    """With M symbols of unit energy per image, ``y = h z + n``: the moment estimate is the
    equivalent SNR ``|h|^2 / N0`` within 6 standard deviations ``sqrt(1 + 2 gamma) / sqrt(M)``
    for any SNR and slow-fading gain (any phase), image by image."""
    b, m = len(snr_db), 50_000
    g = _gen(seed)
    z = pack(torch.randn(b, 2 * m, generator=g, dtype=torch.float64)).z
    no = 10.0 ** (-torch.tensor(snr_db, dtype=torch.float64) / 10.0)
    phase = torch.rand(b, 1, generator=g, dtype=torch.float64) * 6.3
    h = torch.polar(torch.full((b, 1), 10.0 ** (gain_db / 20.0), dtype=torch.float64), phase)
    n = (
        torch.complex(*torch.randn(2, b, m, generator=g, dtype=torch.float64))
        * (no / 2).sqrt()[:, None]
    )
    est = moment_snr(h * z + n, no)
    gamma = h[:, 0].abs().pow(2) / no
    assert ((est - gamma).abs() <= 6 * (1 + 2 * gamma).sqrt() / math.sqrt(m)).all(), (est, gamma)
    # scale- and phase-free: y -> c e^{j phi} y with N0 -> |c|^2 N0 changes nothing
    c = torch.polar(torch.tensor(3.7, dtype=torch.float64), torch.tensor(1.1, dtype=torch.float64))
    torch.testing.assert_close(moment_snr(c * (h * z + n), 3.7**2 * no), est, rtol=1e-9, atol=0)


@settings(max_examples=10, deadline=None)
@given(log_scale=st.floats(-3.0, 3.0), seed=st.integers(0, 2**31 - 1))
def test_learned_estimator_never_sees_the_received_power(log_scale, seed):
    """Pilot-free estimation reads the SNR off the structure, not the power: any rescaling of
    the received latent gives the same estimate (the input is RMS-normalised per image), and
    the estimate lies in the trained range."""
    from semcom.estimation.learned import SNREstimator, SNREstimatorConfig

    torch.manual_seed(seed % 1000)
    cfg = SNREstimatorConfig(channels=4, width=8, blocks=1, scale_stats=True)
    est = SNREstimator(cfg).eval()
    f = torch.randn(2, 4, 8, 8, generator=_gen(seed))
    gamma, _ = est.estimate(f)
    scaled, _ = est.estimate(f * 10.0**log_scale)
    torch.testing.assert_close(10 * torch.log10(scaled), 10 * torch.log10(gamma), atol=1e-3, rtol=0)
    lo, hi = cfg.snr_range
    db = 10 * torch.log10(gamma)
    assert ((db >= lo - 1e-9) & (db <= hi + 1e-9)).all()


def test_estimator_training_logs_the_rmse_in_db_of_its_loss() -> None:
    """The bar's ``rmse_db`` of a step is the root of its loss (an MSE in nepers^2) in dB."""
    from semcom.train.snr_estimator import SNREstimatorTask, SNREstimatorTaskConfig

    task = SNREstimatorTask(SNREstimatorTaskConfig())
    feats, target = torch.tensor([1.0, 3.0]), torch.zeros(2)  # a calibration (bank) batch
    loss, logs = task.loss(lambda feats: feats, (feats, target), torch.Generator())
    assert float(loss) == 5.0 and float(logs["loss"]) == 5.0
    assert float(logs["rmse_db"]) == pytest.approx(DB_PER_NEPER * math.sqrt(5.0), rel=1e-12)
