"""Paper A §V-D mismatch study: ``t_factor``/``alpha_factor`` in the sampler, the
``perturb`` experiment and its CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from semcom.codecs.base import Codec
from semcom.diffusion.samplers import DiffusionReceiver, diffusion_receive
from semcom.eval.experiments import (
    better_than_matched,
    perturb_experiment,
    plot_perturb,
)
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
    assert "t: matched value best" in capsys.readouterr().out
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
