"""Paper A §V-D mismatch study: ``t_factor``/``alpha_factor`` in the sampler, the
``perturb`` experiment and its CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from semcom.channels import Channel
from semcom.codecs.base import Codec
from semcom.diffusion.latents import unit_power
from semcom.diffusion.matching import db_to_linear, level_from_snr
from semcom.diffusion.receiver import DiffusionReceiver, diffusion_receive
from semcom.eval.experiments import (
    _codec_option,
    better_than_matched,
    ood_experiment,
    perturb_experiment,
    plot_perturb,
    trained_on,
)
from semcom.eval.sweep import RunKey
from semcom.link import AnalogLink


def gaussian_denoiser(p0: float):
    """The exact x0-predictor for x0 ~ N(0, P0 I): ``E[x0 | x_t] = sqrt(1-v) P0 / ((1-v) P0 + v)
    x_t``. With the matched step and scaling, one step gives the Bayes (LMMSE) estimate."""

    def denoise(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        v = level.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return (1 - v).sqrt() * p0 / ((1 - v) * p0 + v) * x

    return denoise


DELTAS = (-0.5, -0.2, -0.05, 0.0, 0.05, 0.2, 0.5)


@pytest.mark.parametrize("rule", ["continuous", "vp", "ddm"])
@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 10.0])
@pytest.mark.parametrize("p0", [1.0, 2.5])
def test_matched_step_and_scaling_are_optimal_for_gaussian_latents(rule, snr_db, p0):
    """One step with the exact Gaussian denoiser is linear, ``f_hat = c f_tilde``, so the
    expected MSE is exactly ``(1 - c sqrt(1-d))^2 + c^2 d``: minimal (the Bayes estimate,
    ``c = sqrt(1-d)``) at the matched t* and alpha, larger for every perturbation."""
    d = 1 / (1 + 10 ** (snr_db / 10))
    ones = torch.ones(1, 2, 3, 3, dtype=torch.float64)
    den = gaussian_denoiser(p0)

    def expected_mse(**kw) -> float:
        c = float(diffusion_receive(ones, torch.full((1,), d), den, p0=p0, rule=rule, **kw)
                  .f_hat.mean())  # fmt: skip
        return (1 - c * math.sqrt(1 - d)) ** 2 + c * c * d

    best = d  # Bayes MSE of the unit-variance Gaussian: 1 - (1 - d) = d
    matched = expected_mse()
    # vp: the integer DDPM table rounds t*, so the matched level is only close to exact
    assert matched == pytest.approx(best, rel=2e-3 if rule == "vp" else 1e-9)
    for dl in (-0.5, -0.2, -0.05, 0.05, 0.2, 0.5):
        for kw in ({"t_factor": 1 + dl}, {"alpha_factor": 1 + dl}):
            mse = expected_mse(**kw)
            assert mse >= matched * (1 - 1e-9) or (rule == "vp" and mse >= best), (kw, mse)
            if abs(dl) >= 0.2:
                assert mse > best * (1 + 1e-6), (kw, mse, best)


@pytest.mark.parametrize("rule", ["continuous", "vp", "ddm"])
def test_perturbed_start_reports_its_own_level(rule):
    """With t_factor the reported start (t, level, skip, start from noise) is the perturbed one,
    not the matched."""
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    d = torch.tensor([0.3, 0.6], dtype=torch.float64)
    den = gaussian_denoiser(1.0)
    matched = diffusion_receive(x, d, den, rule=rule).start
    res = diffusion_receive(x, d, den, rule=rule, t_factor=0.5)
    assert torch.all(res.start.level < matched.level) and torch.all(res.start.level > 0)
    assert torch.allclose(res.start.t.double(), (matched.t.double() * 0.5).round()
                          if rule == "vp" else matched.t * 0.5)  # fmt: skip
    assert not bool(res.start.skip.any()) and res.info["n_start_from_noise"] == 0
    top = diffusion_receive(x, d, den, rule=rule, t_factor=100.0)  # clamped to the top
    assert bool(top.start.start_from_noise.all()) and top.info["n_start_from_noise"] == 2
    zero = diffusion_receive(x, d, den, rule=rule, t_factor=0.0)
    assert bool(zero.start.skip.all()) and torch.all(zero.start.level == 0)
    assert zero.info["network_calls"] == 0 and zero.info["n_skip"] == 2


def test_perturb_rejects_bad_factors():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(ValueError, match="alpha_factor"):
        diffusion_receive(x, 0.5, gaussian_denoiser(1.0), alpha_factor=0.0)
    with pytest.raises(ValueError, match="per-image"):
        d = torch.rand(1, 2, 4, 4) * 0.5 + 0.1
        diffusion_receive(x, d, gaussian_denoiser(1.0), t_factor=1.1, fading="waterfill")


class Pool(Codec):
    """Latent = 2x2 average pool of the image minus 0.5 (3 channels); decode upsamples."""

    name = "pool"

    def _encode(self, x, snr_db):
        return torch.nn.functional.avg_pool2d(x, 2) - 0.5

    def _decode(self, latent, snr_db):
        return torch.nn.functional.interpolate(latent + 0.5, scale_factor=2)

    def latent_shape(self, h, w):
        return (3, h // 2, w // 2)


def test_perturb_experiment_on_gaussian_receiver(tmp_path):
    rx = DiffusionReceiver(gaussian_denoiser(1.0), p0=1.0, name="dm")
    link = AnalogLink(Pool(), rx, name="pool+dm")
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(1, 3, 16, 24, generator=g) for _ in range(2)]
    doc = perturb_experiment(link, images, (-10.0, 0.0, 10.0), DELTAS, seed=1, progress=False)
    assert doc["n_images"] == 2 and doc["deltas"] == list(DELTAS)
    assert len(doc["t"]["psnr"]) == 3 and len(doc["alpha"]["latent_mse"][0]) == len(DELTAS)
    assert better_than_matched(doc, "t") == better_than_matched(doc, "alpha") == [[], [], []]
    j0 = DELTAS.index(0.0)
    for s in range(3):  # matched (one step, Gaussian prior) = the LMMSE receiver, same noise
        assert doc["t"]["latent_mse"][s][j0] == pytest.approx(doc["lmmse"]["latent_mse"][s])
        assert doc["t"]["psnr"][s][j0] == pytest.approx(doc["lmmse"]["psnr"][s])
    assert rx.t_factor == rx.alpha_factor == 1.0  # restored
    # the per-image values behind every mean: [S][D][images], lmmse [S][images]
    per = doc["per_image"]
    assert len(per["t"]["psnr"][0][j0]) == 2 and len(per["lmmse"]["latent_mse"][1]) == 2
    assert sum(per["alpha"]["psnr"][2][1]) / 2 == pytest.approx(doc["alpha"]["psnr"][2][1])
    # a receiver that is not diffusion-based is refused
    with pytest.raises(ValueError, match="no diffusion receiver"):
        perturb_experiment(AnalogLink(Pool()), images, progress=False)
    png = plot_perturb(doc, tmp_path / "p.png")
    assert png.stat().st_size > 10_000


def test_perturb_experiment_refuses_a_scheme_that_is_no_link():
    """A scheme without codec and receiver (a separation baseline) gets the ValueError naming
    it, as a link without a diffusion receiver does (it failed on its missing .receiver)."""
    from semcom.separation import CapacityScheme

    with pytest.raises(ValueError, match=r"'jpeg\+capacity' has no diffusion receiver"):
        perturb_experiment(CapacityScheme("jpeg"), [torch.rand(1, 3, 16, 16)], progress=False)


def test_cli_experiment_perturb(weights_root, tmp_path, capsys):
    """`semcom experiment perturb` on vae+dm with a zero-output (= LMMSE) denoiser."""
    from safetensors.torch import save_file

    from semcom.cli import main
    from semcom.diffusion.denoiser import DenoiserConfig, LatentUNet
    from semcom.train.denoiser import DenoiserTask, DenoiserTaskConfig

    model = LatentUNet(DenoiserConfig(channels=32, width=16, mults=(1, 2), blocks=1, emb_dim=32))
    meta = DenoiserTask(DenoiserTaskConfig(codec="vae")).model_metadata(model)
    ckpt = tmp_path / "den.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt), meta)
    out = tmp_path / "perturb.json"
    rc = main(["experiment", "perturb", "--scheme", "vae+dm", "--denoiser", str(ckpt),
               "--dataset", "samples", "--limit", "1", "--crop", "32", "--snr", "0",
               "--deltas", "-0.2", "0.2", "--quiet", "--out", str(out)])  # fmt: skip
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["deltas"] == [-0.2, 0.0, 0.2] and doc["scheme"] == "vae+dm"
    assert doc["command"].startswith("semcom experiment perturb")
    assert out.with_suffix(".png").is_file()
    said = capsys.readouterr().out
    assert "t: matched value best" in said
    # one image has no interval: the verdict says its margins instead of a t-interval
    assert "one image, no interval" in said and "t-interval" not in said
    rc = main(["experiment", "perturb", "--scheme", "vae", "--dataset", "samples", "--limit",
               "1", "--crop", "32", "--out", str(tmp_path / "x.json")])  # fmt: skip
    assert rc == 2


@pytest.mark.parametrize("base", ["deepjscc", "adjscc"])
def test_perturb_runs_the_whole_reverse_process(base, data_root, tmp_path, capsys):
    """The shipped JSCC receivers stop at the decoder's SNR (deepjscc+dm) or feed a decoder
    trained behind them (adjscc+dm), which would hide t* and alpha: perturb refuses them as
    built for eval and the CLI builds them denoising to the clean latent, own decoder."""
    from semcom.cli import main
    from semcom.diffusion.registry import build_dm_link

    x = [torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))]
    with pytest.raises(ValueError, match="dm_stop='clean'"):
        perturb_experiment(build_dm_link(base, 1 / 16, torch.device("cpu")), x, progress=False)
    link = build_dm_link(base, 1 / 16, torch.device("cpu"), dm_stop="clean", dm_decoder="base")
    doc = perturb_experiment(link, x, (0.0, 5.0), (-0.5, 0.0, 0.5), progress=False)
    for p in ("t", "alpha"):  # every perturbation changes the result
        for row in doc[p]["latent_mse"]:
            assert len(set(row)) == 3, (p, row)
    out = tmp_path / "p.json"
    assert main(["experiment", "perturb", "--scheme", f"{base}+dm", "--cbr", "1/16",
                 "--dataset", "samples", "--limit", "1", "--crop", "32", "--snr", "0",
                 "--deltas", "0.2", "--quiet", "--out", str(out)]) == 0  # fmt: skip
    capsys.readouterr()


# ============================================================================== ood (§V-C)
def test_ood_experiment_structure_and_same_noise(tmp_path):
    """Two test sets, the same schemes, seed and SNRs: the drop is in - out per SNR, the
    X+dm gain is X+dm - X on each set; with the exact Gaussian denoiser (one matched step =
    LMMSE) and the same noise for both schemes the gain is exactly 0."""
    from semcom.channels import Channel
    from semcom.eval.experiments import ood_experiment, plot_ood
    from semcom.eval.sweep import RunKey

    g = torch.Generator().manual_seed(0)
    smooth = [torch.full((3, 16, 16), 0.5) + 0.05 * torch.rand(3, 1, 1, generator=g)] * 2
    rough = [torch.rand(3, 16, 16, generator=g) for _ in range(2)]
    rx = DiffusionReceiver(gaussian_denoiser(1.0), p0=1.0, name="dm")
    schemes = [
        (RunKey("pool", None), AnalogLink(Pool(), name="pool")),
        (RunKey("pool+dm", None), AnalogLink(Pool(), rx, name="pool+dm")),
    ]
    snrs = [-5.0, 10.0]
    doc = ood_experiment(
        schemes, {"smooth": smooth, "rough": rough}, Channel("awgn"), snrs,
        metrics=("psnr",), progress=False,
    )  # fmt: skip
    assert (doc["in"], doc["out"]) == ("smooth", "rough")
    assert doc["n_images"] == {"smooth": 2, "rough": 2}
    assert [r["label"] for r in doc["sets"]["rough"]] == ["pool", "pool+dm"]
    for i, label in enumerate(("pool", "pool+dm")):
        a, b = doc["sets"]["smooth"][i]["psnr"], doc["sets"]["rough"][i]["psnr"]
        assert doc["drop"][label]["psnr"] == pytest.approx([x - y for x, y in zip(a, b)])  # noqa: B905
        assert a != b  # the sets differ
    for name in ("smooth", "rough"):
        assert doc["dm_gain"]["pool+dm"][name]["psnr"] == pytest.approx([0, 0], abs=1e-4)
        # the paired interval of each gain over the 2 images: t(0.975, 1) * sd / sqrt(2)
        runs = {r["label"]: r["per_image"]["psnr"] for r in doc["sets"][name]}
        for j, hw in enumerate(doc["dm_gain_ci"]["pool+dm"][name]["psnr"]):
            d = [a - b for a, b in zip(runs["pool+dm"][j], runs["pool"][j])]  # noqa: B905
            assert hw == pytest.approx(12.7062 * abs(d[0] - d[1]) / 2, rel=1e-3, abs=1e-9)
    assert doc["trained_on"]["pool"].startswith("unknown")
    assert plot_ood(doc, tmp_path / "o.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="two test sets"):
        ood_experiment(schemes, {"smooth": smooth}, Channel("awgn"), snrs, progress=False)


def test_trained_on_reads_the_zoo_cards():
    from semcom.eval.experiments import trained_on

    assert trained_on("vae+dm") == "codec: pretrained TAEF2 (frozen); denoiser: bsds500-train"
    assert trained_on("deepjscc", 1 / 6) == "codec: cifar10-train"
    # the denoiser the scheme would load: shipped for DeepJSCC at 1/16, none at 1/6
    assert trained_on("deepjscc+dm", 1 / 16).endswith("denoiser: bsds500-train")
    assert trained_on("deepjscc+dm", 1 / 6) == "codec: cifar10-train; denoiser: unknown"
    # a curve run with --codec names that checkpoint's data, not the shipped default's
    long = "deepjscc-c6-bsds-awgn10-long"
    assert trained_on(f"deepjscc[codec={long}]") == "codec: bsds500-train"
    assert trained_on("vae+dm[steps=2]", denoiser_ref="denoiser-deepjscc-c6-bsds") == (
        "codec: pretrained TAEF2 (frozen); denoiser: bsds500-train"
    )
    assert trained_on("deepjscc[codec=/no/such/run]") == (
        "codec: unknown (no readable card for '/no/such/run')"
    )


@pytest.mark.parametrize(
    ("label", "ref"),
    [
        ("deepjscc", None),
        ("deepjscc+dm[steps=2]", None),
        ("deepjscc[codec=RUN]", "RUN"),
        ("deepjscc+dm[steps=2,codec=/a,b=c/run]", "/a,b=c/run"),  # runs to the bracket
    ],
)
def test_codec_option_of_a_run_label(label, ref):
    from semcom.eval.experiments import _codec_option

    assert _codec_option(label) == ref


def test_codec_option_of_a_label_run_name_makes_with_every_network_option():
    """run_name puts ``codec`` last, after the denoiser and estimator references (whatever
    their characters), so _codec_option reads it back whole."""
    from semcom.eval.experiments import _codec_option
    from semcom.schemes import run_name

    label = run_name("adjscc+dm", steps=2, codec_path="runs/a,b=c", estimator_path="e,st",
                     denoiser_path="d]x", snr_source="learned")  # fmt: skip
    assert label.endswith(",codec=runs/a,b=c]") and _codec_option(label) == "runs/a,b=c"


def test_ood_gain_of_a_codec_variant_is_against_the_same_variant():
    """``pool+dm[codec=X]`` is measured against ``pool[codec=X]``, not the plain ``pool``."""
    from semcom.channels import Channel
    from semcom.eval.experiments import ood_experiment
    from semcom.eval.sweep import RunKey

    class MaxPool(Pool):  # another codec of the same scheme
        def _encode(self, x, snr_db):
            return torch.nn.functional.max_pool2d(x, 2) - 0.5

    imgs = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    rx = DiffusionReceiver(gaussian_denoiser(1.0), p0=1.0, name="dm")
    schemes = [
        (RunKey("pool", None), AnalogLink(Pool(), name="pool")),
        (RunKey("pool[codec=X]", None), AnalogLink(MaxPool(), name="pool")),
        (RunKey("pool+dm[codec=X]", None), AnalogLink(MaxPool(), rx, name="pool+dm")),
    ]
    doc = ood_experiment(
        schemes, {"a": imgs[:1], "b": imgs[1:]}, Channel("awgn"), [0.0],
        metrics=("psnr",), progress=False,
    )  # fmt: skip
    assert list(doc["dm_gain"]) == ["pool+dm[codec=X]"]
    for name in ("a", "b"):  # exact Gaussian denoiser, same noise: no gain over its own codec
        assert doc["dm_gain"]["pool+dm[codec=X]"][name]["psnr"] == pytest.approx([0], abs=1e-4)


def test_cli_experiment_ood(weights_root, data_root, tmp_path, capsys):
    from semcom.cli import main

    out = tmp_path / "ood.json"
    rc = main(["experiment", "ood", "--scheme", "vae", "--in-data", "bsds500-val",
               "--out-data", "kodak", "--limit", "1", "--crop", "32", "--snr", "0",
               "--metrics", "lpips", "--quiet", "--out", str(out)])  # fmt: skip
    assert rc == 0
    doc = json.loads(out.read_text())
    assert set(doc["sets"]) == {"bsds500-val", "kodak"} and doc["n_images"]["kodak"] == 1
    run = doc["sets"]["kodak"][0]
    assert run["label"] == "vae" and len(run["psnr"]) == len(run["lpips"]) == 1  # psnr added
    assert out.with_suffix(".png").is_file() and "mean over SNRs" in capsys.readouterr().out
    rc = main(["experiment", "ood", "--in-data", "kodak", "--out-data", "kodak",
               "--out", str(tmp_path / "x.json")])  # fmt: skip
    assert rc == 2


def test_better_than_matched_is_a_paired_verdict():
    """A perturbation is better than the matched value only when its per-image gain is
    consistent (paired t-interval excludes 0), not when its mean is higher by luck."""
    g = torch.Generator().manual_seed(0)
    images = 25.0 + 3.0 * torch.randn(6, generator=g, dtype=torch.float64)
    matched = images.tolist()
    steady = (images + 0.1 + 0.01 * torch.randn(6, generator=g, dtype=torch.float64)).tolist()
    lucky = (images + 0.1 + 1.0 * torch.randn(6, generator=g, dtype=torch.float64)).tolist()
    worse = (images - 0.5).tolist()
    rows = [steady, matched, lucky, worse]
    doc = {
        "deltas": [-0.1, 0.0, 0.1, 0.2],
        "t": {"psnr": [[sum(r) / 6 for r in rows]]},
        "per_image": {"t": {"psnr": [rows]}},
    }
    assert better_than_matched(doc, "t", "psnr") == [[-0.1]]
    # the same values as a metric where lower is better (latent MSE): delta 0.2, 0.5 lower
    doc_mse = {
        "deltas": doc["deltas"],
        "t": {"latent_mse": doc["t"]["psnr"]},
        "per_image": {"t": {"latent_mse": [rows]}},
    }
    assert better_than_matched(doc_mse, "t", "latent_mse") == [[0.2]]
    # a file without per-image values: the means against fixed tolerances (0.05 dB / 1 %)
    old = {"deltas": doc["deltas"], "t": {"psnr": [[25.0, 25.0, 25.04, 25.06]]}}
    assert better_than_matched(old, "t", "psnr") == [[0.2]]


# ------------------------------------------------ pins found by mutation testing
class SpyReceiver(DiffusionReceiver):
    """The exact Gaussian receiver, recording the factors and inputs of every call."""

    def __init__(self, **kw) -> None:
        super().__init__(gaussian_denoiser(1.0), p0=1.0, name="dm", **kw)
        self.calls: list[tuple[float, float, torch.Tensor, torch.Tensor]] = []

    def __call__(self, f_tilde, d, generator=None):
        self.calls.append((self.t_factor, self.alpha_factor, f_tilde.clone(), d.clone()))
        return super().__call__(f_tilde, d, generator)


def blocky(seed: int, size: int = 32) -> torch.Tensor:
    """A [1, 3, size, size] image constant on 2x2 blocks: Pool decodes its latent exactly."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(1, 3, size // 2, size // 2, generator=g)
    return torch.nn.functional.interpolate(small, scale_factor=2)


SPY_SNRS = (-10.0, 10.0)
SPY_DELTAS = (-0.2, 0.0, 0.5)


def run_spy(seed: int = 0, n_images: int = 2):
    rx = SpyReceiver()
    link = AnalogLink(Pool(), rx, name="pool+dm")
    images = [blocky(i) for i in range(n_images)]
    doc = perturb_experiment(link, images, SPY_SNRS, SPY_DELTAS, seed=seed, progress=False)
    return rx, images, doc


def test_perturb_sets_the_factor_of_the_perturbed_parameter_only():
    """Per image and SNR: first t* = (1 + delta) t* with alpha matched, then alpha."""
    rx, images, _ = run_spy()
    factors = [(t, a) for t, a, _, _ in rx.calls]
    one = [(1 + dl, 1.0) for dl in SPY_DELTAS] + [(1.0, 1 + dl) for dl in SPY_DELTAS]
    assert factors == one * (len(images) * len(SPY_SNRS))
    assert rx.t_factor == rx.alpha_factor == 1.0


def test_perturb_channel_is_the_equivalent_latent_form_with_fresh_noise_per_image_and_snr():
    """``f_tilde = sqrt(1-d) f + sqrt(d) n``, d from the SNR; every perturbation of an image
    at an SNR sees the same ``f_tilde``, other images, SNRs and seeds other noise."""
    rx, images, _ = run_spy()
    per = 2 * len(SPY_DELTAS)
    noise = {}
    for i, x in enumerate(images):
        f = unit_power(Pool().encode(x))
        for s, snr in enumerate(SPY_SNRS):
            calls = rx.calls[(i * len(SPY_SNRS) + s) * per : (i * len(SPY_SNRS) + s + 1) * per]
            d = float(level_from_snr(db_to_linear(snr)))
            for _, _, f_tilde, dd in calls:
                assert torch.equal(f_tilde, calls[0][2])
                assert dd.flatten().tolist() == pytest.approx([d])
            n = (calls[0][2] - math.sqrt(1 - d) * f) / math.sqrt(d)
            assert float(n.pow(2).mean()) == pytest.approx(1.0, abs=0.2)
            assert abs(float(torch.corrcoef(torch.stack([n.flatten(), f.flatten()]))[0, 1])) < 0.2
            noise[i, s] = n
    assert float((noise[0, 0] - noise[0, 1]).abs().max()) > 0.5  # another SNR, other noise
    assert float((noise[0, 0] - noise[1, 0]).abs().max()) > 0.5  # another image, other noise
    other, _, _ = run_spy(seed=1, n_images=1)
    assert not torch.equal(other.calls[0][2], rx.calls[0][2])  # another seed, other noise


def test_perturb_document_records_its_settings_and_every_parameter():
    rx, _, doc = run_spy(seed=3)
    assert (doc["seed"], doc["steps"], doc["rule"]) == (3, rx.steps, rx.rule)
    assert doc["snr_db"] == list(SPY_SNRS) and doc["n_images"] == 2
    j0 = SPY_DELTAS.index(0.0)
    for p in ("t", "alpha"):
        for metric in ("latent_mse", "psnr"):
            for s in range(len(SPY_SNRS)):
                per = doc["per_image"][p][metric][s]
                means = [sum(v) / len(v) for v in per]
                assert doc[p][metric][s] == pytest.approx(means)
                # matched (one step, exact Gaussian denoiser) = the LMMSE receiver
                assert doc[p][metric][s][j0] == pytest.approx(doc["lmmse"][metric][s])
            assert len(set(doc[p]["latent_mse"][0])) == len(SPY_DELTAS)  # each delta measured
    rx3 = DiffusionReceiver(gaussian_denoiser(1.0), p0=1.0, steps=3, rule="ddm")
    doc3 = perturb_experiment(AnalogLink(Pool(), rx3), [blocky(0)], (0.0,), (0.0,), progress=False)
    assert (doc3["steps"], doc3["rule"]) == (3, "ddm")


class Scaled(Pool):
    """Pool with a latent in its own units (RMS far from 1): the decoder needs the scale."""

    needs_scale = True

    def _encode(self, x, snr_db):
        return 3.0 * super()._encode(x, snr_db)

    def _decode(self, latent, snr_db):
        return super()._decode(latent / 3.0, snr_db)


@pytest.mark.parametrize(("codec", "exact"), [(Pool(), False), (Scaled(), True)])
def test_perturb_decodes_in_the_codecs_own_units_only_when_it_needs_the_scale(codec, exact):
    """At a high SNR a blocky image comes back almost exactly when the latent is handed back
    in the codec's own units (``needs_scale``); a plain codec gets the unit-power latent,
    which Pool decodes wrongly."""
    link = AnalogLink(codec, DiffusionReceiver(gaussian_denoiser(1.0), p0=1.0), name="x+dm")
    doc = perturb_experiment(link, [blocky(0)], (40.0,), (0.0,), progress=False)
    for psnr in (doc["lmmse"]["psnr"][0], doc["t"]["psnr"][0][0]):
        assert (psnr > 35) if exact else (psnr < 20), psnr


class Adaptive(Pool):
    """An SNR-adaptive Pool recording the SNRs its encoder is told."""

    snr_adaptive = True

    def __init__(self) -> None:
        super().__init__()
        self.told: list[float] = []

    def _encode(self, x, snr_db):
        self.told.append(float(snr_db))
        return super()._encode(x, snr_db)


def test_perturb_tells_an_adaptive_encoder_each_snr_and_a_plain_one_the_first():
    snrs = (-5.0, 0.0, 5.0)
    ada = Adaptive()
    link = AnalogLink(ada, DiffusionReceiver(gaussian_denoiser(1.0), p0=1.0), name="a+dm")
    perturb_experiment(link, [blocky(0), blocky(1)], snrs, (0.0,), progress=False)
    assert ada.told == list(snrs) * 2
    plain = Adaptive()
    plain.snr_adaptive = False
    link = AnalogLink(plain, DiffusionReceiver(gaussian_denoiser(1.0), p0=1.0), name="p+dm")
    perturb_experiment(link, [blocky(0)], snrs, (0.0,), progress=False)
    assert plain.told == [-5.0]


class SideInput(Pool):
    dm_side = True


@pytest.mark.parametrize(
    ("codec", "kw"),
    [(Pool(), {"stop_snr_db": 5.0}), (Pool(), {"skip_snr_db": 5.0}), (SideInput(), {})],
)
def test_perturb_refuses_a_receiver_that_hides_the_factors(codec, kw):
    link = AnalogLink(codec, SpyReceiver(**kw), name="x+dm")
    with pytest.raises(ValueError, match="dm_stop='clean'"):
        perturb_experiment(link, [blocky(0)], (0.0,), (0.0,), progress=False)
    assert link.receiver.calls == []


@pytest.mark.parametrize("deltas", [(-1.0, 0.0), (0.0, -1.5)])
def test_perturb_refuses_a_factor_that_is_not_positive(deltas):
    link = AnalogLink(Pool(), SpyReceiver(), name="x+dm")
    with pytest.raises(ValueError, match="every delta must be > -1"):
        perturb_experiment(link, [blocky(0)], (0.0,), deltas, progress=False)
    assert link.receiver.calls == []


# ------------------------------------------------------------------ better_than_matched
def paired_doc(param: str, metric: str, rows: list[list[float]]) -> dict:
    """One SNR, deltas (0.0, 0.1), the per-image values ``rows`` and their means."""
    return {
        "deltas": [0.0, 0.1],
        param: {metric: [[sum(r) / len(r) for r in rows]]},
        "per_image": {param: {metric: [rows]}},
    }


def test_better_than_matched_pairs_two_images_and_falls_back_for_one():
    # two images, a steady gain of 0.03 dB: beyond noise paired, below the 0.05 dB fallback
    two = paired_doc("t", "psnr", [[25.0, 30.0], [25.03, 30.031]])
    assert better_than_matched(two, "t", "psnr") == [[0.1]]
    # one image: no interval, the means against the tolerance
    assert better_than_matched(paired_doc("t", "psnr", [[25.0], [25.03]]), "t", "psnr") == [[]]
    assert better_than_matched(paired_doc("t", "psnr", [[25.0], [25.06]]), "t", "psnr") == [[0.1]]


def test_better_than_matched_reads_the_per_image_values_of_its_parameter():
    doc = paired_doc("alpha", "psnr", [[25.0, 30.0], [25.03, 30.031]])
    assert better_than_matched(doc, "alpha", "psnr") == [[0.1]]


def test_better_than_matched_uses_the_confidence_level():
    # gains 0.1, 0.2, 0.3: the 95 % interval (half-width 0.25) holds 0, the 50 % one does not
    doc = paired_doc("t", "psnr", [[25.0, 26.0, 27.0], [25.1, 26.2, 27.3]])
    assert better_than_matched(doc, "t", "psnr") == [[]]
    assert better_than_matched(doc, "t", "psnr", level=0.5) == [[0.1]]


def test_better_than_matched_latent_mse_fallback_is_one_percent_lower():
    old = {"deltas": [-0.1, 0.0, 0.1, 0.2], "t": {"latent_mse": [[0.995, 1.0, 0.98, 1.05]]}}
    assert better_than_matched(old, "t", "latent_mse") == [[0.1]]


# ---------------------------------------------------------------------------------- ood
def test_ood_refuses_more_than_two_sets_before_any_work():
    link = AnalogLink(Pool(), SpyReceiver(), name="pool+dm")
    imgs = [blocky(0)[0]]
    with pytest.raises(ValueError, match="two test sets"):
        ood_experiment(
            [(RunKey("pool+dm", None), link)], {"a": imgs, "b": imgs, "c": imgs},
            Channel("awgn"), [0.0], metrics=("psnr",), progress=False,
        )  # fmt: skip
    assert link.receiver.calls == []


def test_ood_lpips_drop_is_out_minus_in(weights_root):
    smooth = [torch.full((3, 32, 32), 0.5) + 0.05 * torch.arange(3.0).view(3, 1, 1)]
    rough = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))]
    doc = ood_experiment(
        [(RunKey("pool", None), AnalogLink(Pool(), name="pool"))], {"s": smooth, "r": rough},
        Channel("awgn"), [10.0], metrics=("psnr", "lpips"), progress=False,
    )  # fmt: skip
    run_in, run_out = doc["sets"]["s"][0], doc["sets"]["r"][0]
    assert doc["drop"]["pool"]["lpips"] == pytest.approx([run_out["lpips"][0] - run_in["lpips"][0]])
    assert run_out["lpips"][0] != pytest.approx(run_in["lpips"][0])
    assert doc["drop"]["pool"]["psnr"] == pytest.approx([run_in["psnr"][0] - run_out["psnr"][0]])


def test_ood_gain_is_against_the_codec_at_the_same_cbr_and_signed_dm_minus_base():
    class MaxPool(Pool):
        def _encode(self, x, snr_db):
            return torch.nn.functional.max_pool2d(x, 2) - 0.5

    imgs = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    rx = DiffusionReceiver(gaussian_denoiser(4.0), p0=1.0, name="dm")  # mismatched prior
    schemes = [
        (RunKey("pool", 0.5), AnalogLink(MaxPool(), name="pool")),
        (RunKey("pool", 0.25), AnalogLink(Pool(), name="pool")),
        (RunKey("pool+dm", 0.25), AnalogLink(Pool(), rx, name="pool+dm")),
    ]
    doc = ood_experiment(
        schemes, {"a": imgs[:1], "b": imgs[1:]}, Channel("awgn"), [0.0, 10.0],
        metrics=("psnr",), progress=False,
    )  # fmt: skip
    (label,) = doc["dm_gain"]
    for name in ("a", "b"):
        runs = {r["label"]: r["psnr"] for r in doc["sets"][name]}
        gain = [x - y for x, y in zip(runs[label], runs["pool@1/4"], strict=True)]
        assert doc["dm_gain"][label][name]["psnr"] == pytest.approx(gain)
        assert any(abs(g) > 0.01 for g in gain)  # a real, signed gain


def test_ood_runs_with_its_seed_and_records_it():
    imgs = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))]

    def run(seed: int) -> dict:
        return ood_experiment(
            [(RunKey("pool", None), AnalogLink(Pool(), name="pool"))], {"a": imgs, "b": imgs},
            Channel("awgn"), [0.0], seed=seed, metrics=("psnr",), progress=False,
        )  # fmt: skip

    zero, three = run(0), run(3)
    assert three["seed"] == 3
    assert zero["sets"]["a"][0]["psnr"] != three["sets"]["a"][0]["psnr"]
    assert three["sets"]["a"][0]["psnr"] == three["sets"]["b"][0]["psnr"]  # same noise


def test_ood_trained_on_names_the_given_denoiser_and_the_cbr(weights_root):
    imgs = [torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))]
    rx = DiffusionReceiver(gaussian_denoiser(1.0), p0=1.0, name="dm")
    ref = "/no/such/denoiser"  # not the zoo's: its (missing) card is named
    doc = ood_experiment(
        [(RunKey("vae+dm", None), AnalogLink(Pool(), rx, name="vae+dm")),
         (RunKey("deepjscc", 1 / 6), AnalogLink(Pool(), name="deepjscc"))],
        {"a": imgs, "b": imgs}, Channel("awgn"), [0.0], metrics=("psnr",), progress=False,
        denoiser_ref=ref,
    )  # fmt: skip
    assert doc["trained_on"]["vae+dm"] == trained_on("vae+dm", None, ref)
    assert doc["trained_on"]["vae+dm"].endswith(f"denoiser: unknown (no readable card for {ref!r})")
    assert doc["trained_on"]["deepjscc@1/6"] == trained_on("deepjscc", 1 / 6)


def test_trained_on_names_no_denoiser_for_a_scheme_without_one():
    ref = "denoiser-deepjscc-c6-bsds"
    assert trained_on("vae", denoiser_ref=ref) == "codec: pretrained TAEF2 (frozen)"


@pytest.mark.parametrize("label", ["deepjscc[codec=RUN", "deepjscc[steps=2,codec=RUN"])
def test_codec_option_of_an_unclosed_label_is_none(label):
    assert _codec_option(label) is None
