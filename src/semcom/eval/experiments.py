"""Paper experiments as functions (``semcom experiment ...``).

``perturb`` (paper A §V-D): how much does the receiver lose when the matched start step
``t*`` or the scaling ``alpha`` (Theorems 1 and 2) is off by a factor ``1 + delta``? The
channel is simulated in the equivalent latent form ``f_tilde = sqrt(1-d) f + sqrt(d) n``
(AWGN after MMSE equalisation + normalisation, docs/math.md §4; verified in the channel tests), so
every perturbation of an image sees exactly the same noise. Reported per SNR and delta: the
latent MSE against the clean unit-power latent, and the PSNR of the decoded image (8-bit,
per image, averaged), together with the plain LMMSE receiver for reference.

``ood`` (paper A §V-C): every scheme on an in-distribution test set (e.g. bsds500-val for
checkpoints trained on bsds500-train) and an out-of-distribution one (e.g. kodak or
cifar10-test), same channel, seed and SNR grid; reported per scheme: both curves, the drop
from in- to out-of-distribution, and for each ``X+dm`` next to ``X`` the receiver's gain on
both sets (does the denoiser's benefit survive the distribution shift?).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..channels import Channel
from ..codecs.base import Codec
from ..diffusion.latents import unit_power
from ..diffusion.matching import db_to_linear, level_from_snr
from ..link import AnalogLink, Scheme
from ..metrics import compute_metrics
from .plot import METRIC_LABELS, new_figure, save_figure
from .stats import compare_runs, favoured, paired_interval
from .sweep import RunKey, evaluate, image_seed, scheme_weights, summarize

DEFAULT_DELTAS = (-0.5, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.5)


def _noise_like(f: Tensor, seed: int) -> Tensor:
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(f.shape, generator=g, dtype=f.dtype).to(f.device)


class _CleanImage:
    """An image, its clean unit-power latent ``f`` and the scorer of latent estimates."""

    def __init__(self, codec: Codec, x: Tensor, snr_db: float) -> None:
        self.codec, self.x = codec, x
        latent = codec.encode(x, torch.full((1,), float(snr_db)))
        self.f = unit_power(latent)
        self.scale = latent.pow(2).mean().sqrt() if codec.needs_scale else torch.ones(())

    def score(self, f_hat: Tensor, snr_db: float) -> tuple[float, float]:
        """(latent MSE against ``f``, PSNR in dB of the decoded 8-bit image)."""
        mse = float((f_hat - self.f).pow(2).mean())
        size = (self.x.shape[-2], self.x.shape[-1])
        out = self.codec.decode(f_hat * self.scale, size, torch.full((1,), float(snr_db)))
        return mse, float(compute_metrics(out.clamp(0, 1), self.x, ("psnr",))["psnr"].mean())


@torch.inference_mode()
def perturb_experiment(
    link: Scheme,
    images: Sequence[Tensor],
    snrs: Sequence[float] = (-10.0, 0.0, 10.0),
    deltas: Sequence[float] = DEFAULT_DELTAS,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Mismatch study of a diffusion scheme (an :class:`~semcom.link.AnalogLink` whose
    receiver is a :class:`~semcom.diffusion.receiver.DiffusionReceiver`).

    Args:
        images: [1, 3, H, W] tensors in [0, 1].
        snrs: channel SNRs (dB, Es/N0 = equivalent SNR after equalisation).
        deltas: relative perturbations; ``t_factor = 1 + delta`` (resp. ``alpha_factor``).

    Returns:
        ``{"snr_db", "deltas", "n_images", "lmmse": {"psnr": [S], "latent_mse": [S]},
        "t": {...: [S][D]}, "alpha": {...: [S][D]}}`` (means over images).
    """
    from tqdm import tqdm

    from ..diffusion.receiver import DiffusionReceiver

    if not isinstance(link, AnalogLink) or not isinstance(link.receiver, DiffusionReceiver):
        raise ValueError(f"scheme {link.name!r} has no diffusion receiver to perturb")
    rx = link.receiver
    codec = link.codec
    if rx.stop_snr_db is not None or rx.skip_snr_db is not None or getattr(codec, "dm_side", False):
        # t* and alpha act on the whole reverse process; a receiver that stops at or skips
        # from an SNR, or a decoder reading its LMMSE side input, would hide or ignore them
        raise ValueError(
            f"perturb needs scheme {link.name!r} to denoise every image to the clean latent and "
            "decode it with the codec's own decoder: build it with dm_stop='clean' and "
            "dm_decoder='base' (--dm-stop clean --dm-decoder base)"
        )
    if any(1 + dl <= 0 for dl in deltas):
        raise ValueError(f"every delta must be > -1 (factor 1 + delta > 0), got {list(deltas)}")
    S, D = len(snrs), len(deltas)

    n = len(images)

    def zeros(*shape: int) -> Tensor:
        return torch.zeros(*shape, n, dtype=torch.float64)  # one value per image

    acc = {p: {"psnr": zeros(S, D), "latent_mse": zeros(S, D)} for p in ("t", "alpha")}
    base = {"psnr": zeros(S), "latent_mse": zeros(S)}
    total = len(images) * S * (2 * D + 1)
    bar = tqdm(total=total, desc="perturb", unit="run", disable=not progress)
    try:
        for i, x in enumerate(images):
            clean = _CleanImage(codec, x, snrs[0])
            for s, snr in enumerate(snrs):
                if s and codec.snr_adaptive:  # its encoder is told the SNR (ADJSCC)
                    clean = _CleanImage(codec, x, snr)
                d = float(level_from_snr(db_to_linear(snr)))
                noise = _noise_like(clean.f, image_seed(seed, i) + s)
                f_tilde = math.sqrt(1 - d) * clean.f + math.sqrt(d) * noise
                dd = torch.full((1, 1, 1, 1), d, dtype=f_tilde.dtype, device=f_tilde.device)
                mse, psnr = clean.score(math.sqrt(1 - d) * f_tilde, snr)
                base["latent_mse"][s, i] = mse
                base["psnr"][s, i] = psnr
                bar.update()
                for param in ("t", "alpha"):
                    for j, dl in enumerate(deltas):
                        rx.t_factor = 1.0 + dl if param == "t" else 1.0
                        rx.alpha_factor = 1.0 + dl if param == "alpha" else 1.0
                        mse, psnr = clean.score(rx(f_tilde, dd), snr)
                        acc[param]["latent_mse"][s, j, i] = mse
                        acc[param]["psnr"][s, j, i] = psnr
                        bar.update()
    finally:
        rx.t_factor = rx.alpha_factor = 1.0
        bar.close()
    return {
        "experiment": "perturb",
        "scheme": link.name,
        "rule": rx.rule,
        "steps": rx.steps,
        "snr_db": list(snrs),
        "deltas": list(deltas),
        "n_images": n,
        "seed": seed,
        "lmmse": {k: v.mean(-1).tolist() for k, v in base.items()},
        **{p: {k: v.mean(-1).tolist() for k, v in acc[p].items()} for p in ("t", "alpha")},
        # the values behind the means, for paired verdicts (better_than_matched)
        "per_image": {
            "lmmse": {k: v.tolist() for k, v in base.items()},
            **{p: {k: v.tolist() for k, v in acc[p].items()} for p in ("t", "alpha")},
        },
    }


def better_than_matched(
    doc: dict, param: str, metric: str = "latent_mse", level: float = 0.95
) -> list[list[float]]:
    """Per SNR: the perturbations (deltas) of ``param`` that beat the matched value (delta =
    0) beyond noise: the paired t-interval over the images (:func:`.stats.paired_interval`)
    of their difference excludes 0 in their favour (lower latent MSE, higher PSNR). Files
    written before the per-image values were recorded (or of one image): beyond 1 % (MSE) /
    0.05 dB (PSNR) of the means."""
    j0 = doc["deltas"].index(0.0)
    per = doc.get("per_image", {}).get(param, {}).get(metric)
    out = []
    for s, row in enumerate(doc[param][metric]):
        better = []
        for j, dl in enumerate(doc["deltas"]):
            if j == j0:
                continue
            if per is not None and len(per[s][j0]) >= 2:
                diff = paired_interval(per[s][j], per[s][j0], level)
                beats = favoured(diff, higher_is_better=metric == "psnr") == "a"
            elif metric == "psnr":
                beats = row[j] > row[j0] + 0.05
            else:
                beats = row[j] < row[j0] / 1.01
            if beats:
                better.append(dl)
        out.append(better)
    return out


def plot_perturb(doc: dict, out: str | Path) -> Path:
    """2x2 panels (t*, alpha) x (latent MSE change in dB, PSNR change in dB) against the
    perturbation in %, one line per SNR, relative to the matched value -> PNG ``out``."""
    fig, axes = new_figure(2, 2, figsize=(10, 7), sharex=True)
    pct = [100 * d for d in doc["deltas"]]
    j0 = doc["deltas"].index(0.0) if 0.0 in doc["deltas"] else None
    for col, param in enumerate(("t", "alpha")):
        for row, metric in enumerate(("latent_mse", "psnr")):
            ax = axes[row][col]
            for s, snr in enumerate(doc["snr_db"]):
                vals = doc[param][metric][s]
                if metric == "latent_mse":
                    ref = vals[j0] if j0 is not None else 1.0
                    ys = [10 * math.log10(v / ref) for v in vals]
                else:
                    ref = vals[j0] if j0 is not None else 0.0
                    ys = [v - ref for v in vals]
                ax.plot(pct, ys, marker="o", label=f"{snr:g} dB")
            ax.axvline(0, color="grey", lw=0.5)
            ax.axhline(0, color="grey", lw=0.5)
            name = "t*" if param == "t" else "alpha"
            ax.set_title(f"perturbed {name}")
            ax.set_ylabel(
                "latent MSE vs matched (dB, lower is better)"
                if metric == "latent_mse"
                else "PSNR vs matched (dB, higher is better)"
            )
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel("perturbation (%)")
    axes[0][0].legend(title="SNR")
    fig.suptitle(
        f"{doc['scheme']}: mismatch of the matched step and scaling "
        f"({doc['n_images']} images, rule {doc['rule']}, K={doc['steps']})"
    )
    return save_figure(fig, out)


# ------------------------------------------------------------------------------ ood
def trained_on(label: str, cbr: float | None = None, denoiser_ref: str | None = None) -> str:
    """Training data of the checkpoints behind the curve ``label`` (a scheme name or run label,
    e.g. ``deepjscc+dm[codec=RUN]``), from their cards, e.g. ``"codec: bsds500-train;
    denoiser: bsds500-train"``: the codec the label names (``codec=``) or the shipped one,
    the denoiser ``denoiser_ref`` (``--denoiser``) or the zoo's for that codec."""
    from ..diffusion.checkpoint import find_denoiser, latent_cbr_key
    from ..zoo import find_checkpoint, read_card, trained_data

    def data_of(ref: str) -> str:  # called after the sweep: an unreadable card loses nothing
        try:
            return trained_data(read_card(ref)[1])
        except ValueError:
            return f"unknown (no readable card for {ref!r})"

    base, ref = _base_name(label), _codec_option(label)
    base, dm = (base[:-3], True) if base.endswith("+dm") else (base, False)
    parts = []
    if base == "vae":
        parts.append("codec: pretrained TAEF2 (frozen)")
    elif ref is not None:
        parts.append(f"codec: {data_of(ref)}")
    else:
        try:
            parts.append(f"codec: {find_checkpoint(base, cbr).data}")
        except ValueError:
            return "unknown (not a zoo scheme)"
    if dm and denoiser_ref is not None:
        parts.append(f"denoiser: {data_of(denoiser_ref)}")
    elif dm:  # the shipped denoiser the scheme loads (diffusion.registry.denoiser_file)
        try:
            parts.append(f"denoiser: {find_denoiser(base, latent_cbr_key(base, cbr)).data}")
        except ValueError:
            parts.append("denoiser: unknown")
    return "; ".join(parts)


def _base_name(label: str) -> str:
    """``"vae+dm[steps=8]"`` -> ``"vae+dm"`` (run labels carry receiver options)."""
    return label.split("[", 1)[0]


def _codec_option(label: str) -> str | None:
    """The codec reference of a run label (``"deepjscc+dm[steps=2,codec=RUN]"`` -> ``"RUN"``),
    or None. ``codec`` is the last labelled option (``schemes.LABELLED_OPTIONS``), so the
    reference runs to the closing bracket whatever characters it holds."""
    _, sep, opts = label.partition("[")
    if not sep or not opts.endswith("]"):
        return None
    i = ("," + opts).find(",codec=")
    return opts[i + len("codec=") : -1] if i >= 0 else None


def ood_experiment(
    schemes: Sequence[tuple[RunKey, Scheme]],
    test_sets: dict[str, Sequence[Tensor]],
    channel: Channel,
    snrs: Sequence[float],
    *,
    seed: int = 0,
    metrics: Sequence[str] = ("psnr", "lpips"),
    device: str | torch.device = "cpu",
    progress: bool = True,
    denoiser_ref: str | None = None,
) -> dict:
    """Every scheme on two test sets (in-distribution first, then out-of-distribution).

    Args:
        schemes: ``(RunKey, scheme)`` pairs as for :func:`~semcom.eval.sweep.evaluate`.
        test_sets: ordered ``{dataset name: [3, H, W] images in [0, 1]}``, exactly two
            entries, in-distribution first.
        snrs: SNR grid (dB); ``metrics``: names from :mod:`semcom.metrics`.
        denoiser_ref: the ``--denoiser`` the ``+dm`` schemes were built with (its card names
            its training data in ``trained_on``); None: the zoo's.

    Returns:
        ``{"experiment": "ood", "in": name, "out": name, "snr_db", "sets": {name: [runs]},
        "drop": {label: {metric: [in - out per SNR]}}, "dm_gain": {label: {name:
        {metric: [X+dm - X per SNR]}}}, "dm_gain_ci": the same shape, the half-width of each
        gain's paired 95 % t-interval over the images}`` (runs in the docs/results-format.md format;
        LPIPS drops are out - in, so a positive drop is always a loss out of distribution; the
        LPIPS gain stays X+dm - X, negative when the receiver helps).
    """
    if len(test_sets) != 2:
        raise ValueError(f"need exactly two test sets (in, out), got {list(test_sets)}")
    keys = [k for k, _ in schemes]
    weights = scheme_weights(schemes)
    sets: dict[str, list[dict]] = {}
    for name, images in test_sets.items():
        rows = evaluate(
            schemes,
            [(i, f"{name}:{i}", img) for i, img in enumerate(images)],
            channel,
            snrs,
            seed=seed,
            metrics=metrics,
            device=device,
            progress=progress,
        )
        sets[name] = summarize(rows, keys, snrs, metrics, weights)
        for k, run in zip(keys, sets[name], strict=True):
            run["label"] = k.label
    name_in, name_out = list(test_sets)
    by_label = {name: {r["label"]: r for r in runs} for name, runs in sets.items()}
    runs_in, runs_out = by_label[name_in], by_label[name_out]

    def diff(a: dict, b: dict, m: str) -> list[float]:
        return [x - y for x, y in zip(a[m], b[m], strict=True)]

    drop = {
        lb: {
            m: diff(runs_in[lb], runs_out[lb], m)
            if m != "lpips"
            else diff(runs_out[lb], runs_in[lb], m)
            for m in metrics
        }
        for lb in runs_in
    }
    dm_gain: dict[str, dict] = {}
    dm_gain_ci: dict[str, dict] = {}
    for k in keys:
        if not _base_name(k.scheme).endswith("+dm"):
            continue
        ref = _codec_option(k.scheme)  # deepjscc+dm[codec=X] is measured against deepjscc[codec=X]
        codec = _base_name(k.scheme)[:-3] + ("" if ref is None else f"[codec={ref}]")
        base = next((b for b in keys if b.scheme == codec and b.cbr == k.cbr), None)
        if base is None:
            continue
        dm_gain[k.label] = {
            name: {m: diff(runs[k.label], runs[base.label], m) for m in metrics}
            for name, runs in by_label.items()
        }
        dm_gain_ci[k.label] = {
            name: _paired_half_widths(runs[k.label], runs[base.label], metrics)
            for name, runs in by_label.items()
        }
    return {
        "experiment": "ood",
        "in": name_in,
        "out": name_out,
        "snr_db": list(snrs),
        "seed": seed,
        "channel": repr(channel),
        "n_images": {name: len(images) for name, images in test_sets.items()},
        "trained_on": {k.label: trained_on(k.scheme, k.cbr, denoiser_ref) for k in keys},
        "sets": sets,
        "drop": drop,
        "dm_gain": dm_gain,
        "dm_gain_ci": dm_gain_ci,
    }


def _paired_half_widths(run: dict, base: dict, metrics: Sequence[str]) -> dict[str, list[float]]:
    """Per metric and SNR: the half-width of the paired 95 % t-interval of ``run - base`` over
    the images (:func:`.stats.compare_runs`)."""
    rows = compare_runs(run, base, metrics)
    return {m: [r.diff.half_width for r in rows if r.metric == m] for m in metrics}


def plot_ood(doc: dict, out: str | Path, metric: str = "psnr") -> Path:
    """``metric`` against SNR: one colour per scheme, solid in-distribution, dashed
    out-of-distribution -> PNG ``out``."""
    import matplotlib

    fig, ax = new_figure(figsize=(7, 4.5))
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = [r["label"] for r in doc["sets"][doc["in"]]]
    for i, label in enumerate(labels):
        for name, style in ((doc["in"], "-"), (doc["out"], "--")):
            run = doc["sets"][name][i]
            ax.plot(
                doc["snr_db"],
                run[metric],
                style,
                marker="o",
                ms=3,
                color=colours[i % len(colours)],
                label=f"{label} on {name}",
            )
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(
        f"in-distribution ({doc['in']}, solid) vs out-of-distribution ({doc['out']}, dashed)",
        fontsize=9,
    )
    return save_figure(fig, out)
