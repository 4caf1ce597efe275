"""The names and limits the command line offers as choices (channels, CSI modes, metrics,
receiver options, built-in schemes, data sets, training options), in a module that imports
nothing heavy: the parser, ``semcom --help``, the listings (``schemes``, ``datasets``) and the
results commands (``table``, ``compare``, ``plot``, ``merge``) read them without importing
torch. The modules that implement each name import it from here
(``semcom.channels.CHANNELS`` is :data:`CHANNELS`)."""

from __future__ import annotations

from pathlib import Path

# ---------------------------------------------------------------------------------- channels
CHANNELS = ("awgn", "rayleigh-slow", "rayleigh-fast")
CSI_MODES = ("perfect", "estimated")
#: lowest SNR in dB a channel takes: below it N0 = 10^(-SNR/10) overflows float32 (NaN images)
SNR_LIMIT_DB = 150.0

# ----------------------------------------------------------------------------------- metrics
METRICS: tuple[str, ...] = ("psnr", "ssim", "ms_ssim", "lpips", "lpips_vgg", "dists")


def in_db(name: str) -> bool:
    """Whether metric ``name`` is in dB: ``psnr`` and the ``*_db`` entries of a results file
    (e.g. ``snr_est_rmse_db``); the others (SSIM, LPIPS, latent MSE, ...) are unitless."""
    return name == "psnr" or name.endswith("_db")


HIGHER_IS_BETTER = {
    "psnr": True,
    "ssim": True,
    "ms_ssim": True,
    "lpips": False,
    "lpips_vgg": False,
    "dists": False,
}

# ---------------------------------------------------------------------------------- receivers
#: where the reverse process stops: ``auto`` = at the training SNR of a JSCC decoder trained at
#: one SNR (DeepJSCC), else at the clean latent (with a decoder trained behind the receiver:
#: not run at all from ``TUNED_SKIP_SNR_DB`` up); ``clean`` = always at the clean latent.
DM_STOPS = ("auto", "clean")
#: the decoder after the receiver: ``auto`` = one trained behind this denoiser when in the zoo
#: (``semcom train jscc --behind-dm``), else the codec's own; ``base`` = the codec's own; any
#: other value names such a decoder (zoo name, run folder or ``.safetensors``).
DM_DECODERS = ("auto", "base")
#: matching rules, fast-fading variants and grids of the receivers (the Literal types of
#: :mod:`semcom.diffusion.matching` and :mod:`semcom.diffusion.fading`)
RULES = ("continuous", "vp", "ddm")
FADING_VARIANTS = ("waterfill", "reference", "naive")
FADING_GRIDS = ("time", "quantile")
#: where a receiver's SNR comes from (:mod:`semcom.estimation`)
SNR_SOURCES = ("known", "moment", "learned")

# ----------------------------------------------------------------------------------- schemes
# get_scheme option -> the CLI flag that sets it (underscored), where the two differ
OPTION_FLAGS = {
    "denoiser_path": "denoiser",
    "estimator_path": "snr_estimator",
    "codec_path": "codec",
}

#: options named in run labels. The networks are named as given (a zoo name or a path): another
#: denoiser, SNR estimator or codec makes another curve, which merging must not take for the
#: shipped one. ``codec_path`` comes last (:func:`semcom.eval.experiments._codec_option` reads
#: it up to the closing bracket).
LABELLED_OPTIONS = (
    "matching",
    "steps",
    "fading",
    "fading_grid",
    "fading_samples",
    "dm_stop",
    "dm_decoder",
    "snr_source",
    "denoiser_path",
    "estimator_path",
    "codec_path",
)

#: entry-point group of installed packages that register schemes (:mod:`semcom.schemes`)
PLUGIN_GROUP = "semcom.schemes"
#: the image formats of the separation baselines (:func:`available_formats`: those this
#: Pillow build writes)
IMAGE_FORMATS = ("jpeg", "webp", "avif")
#: fixed MCSs registered as ``<fmt>+ldpc:<mcs>`` (jpeg and webp; any other MCS is one line of
#: Python: :class:`semcom.separation.LDPCScheme`)
REGISTERED_MCS = ("bpsk-1/2", "qpsk-1/2", "qpsk-3/4", "16qam-1/2", "16qam-3/4", "64qam-2/3")


def available_formats() -> tuple[str, ...]:
    """Formats this Pillow build can write: jpeg, webp, and avif when compiled in."""
    from PIL import features

    return tuple(f for f in IMAGE_FORMATS if f == "jpeg" or features.check(f))


def _separation_schemes() -> dict[str, str]:
    out = {}
    for fmt in IMAGE_FORMATS:
        up = fmt.upper()
        out[f"{fmt}+capacity"] = f"{up} at the largest quality fitting the ideal channel capacity"
        out[f"{fmt}+ldpc"] = f"{up} + 5G LDPC + QAM, genie best-MCS envelope (20 MCSs)"
        for mcs in REGISTERED_MCS if fmt != "avif" else ():
            modulation, rate = mcs.split("-")
            out[f"{fmt}+ldpc:{mcs}"] = f"{up} + 5G LDPC rate {rate} + {modulation.upper()}"
    return out


#: every built-in scheme and one line on it for ``semcom schemes``, which reads them here
#: without importing torch; the registries (:mod:`semcom.codecs.registry`,
#: :mod:`semcom.diffusion.registry`, :mod:`semcom.separation.registry`) register them under
#: these descriptions. The ``avif`` ones exist where Pillow writes AVIF (:func:`available_formats`).
SCHEMES: dict[str, str] = {
    "vae": "frozen pretrained TAEF2 autoencoder (paper A transmitter), LMMSE receiver",
    "deepjscc": "DeepJSCC (Bourtsoulatze 2019) CNN, zoo checkpoint per CBR or --codec, LMMSE "
    "receiver",
    "adjscc": "ADJSCC (Xu 2021) SNR-adaptive CNN, zoo checkpoint per CBR or --codec, LMMSE "
    "receiver",
    "vae+dm": "paper A: TAEF2 latent + step-matched diffusion denoiser (one model, all SNRs)",
    "deepjscc+dm": "paper B setting: DeepJSCC latent + step-matched diffusion denoiser (other "
    "CBRs: train one, --denoiser)",
    "adjscc+dm": "paper B setting: ADJSCC latent + step-matched diffusion denoiser (other CBRs: "
    "train one, --denoiser)",
    **_separation_schemes(),
}
#: the CBR of the TAEF2 schemes (``vae``, ``vae+dm``), which send its whole latent
VAE_CBR = 1 / 12

# ---------------------------------------------------------------------------------- training
#: the JSCC codec models (:data:`semcom.codecs.jscc.MODELS` maps them to their classes)
JSCC_MODELS = ("deepjscc", "adjscc")
#: learning-rate schedules of :class:`semcom.train.TrainConfig`
SCHEDULES = ("cosine", "step", "constant")
#: training losses of :class:`semcom.train.JSCCConfig`
LOSSES = ("mse", "psnr")
#: the training settings a resume may change (how the run goes on, or how this invocation
#: runs); every other one must be the checkpoint's (``semcom train --resume`` and
#: ``Trainer.fit(resume=...)`` check it)
RESUME_FREE = frozenset(
    {"epochs", "max_steps", "device", "num_workers", "progress", "threads", "out", "command",
     "ckpt_every", "val_batch_size", "val_every", "extra", "cache_images"}
)  # fmt: skip

# --------------------------------------------------------------------------------- data sets
# name -> (folders relative to the data root, or None for the bundled samples; description)
NAMED_DATASETS: dict[str, tuple[tuple[str, ...] | None, str]] = {
    "kodak": (("kodak",), "Kodak PhotoCD: 24 lossless 768x512 photos (PNG)"),
    "cifar10-train": (("cifar10/train",), "CIFAR-10 training set: 50,000 32x32 JPEGs"),
    "cifar10-test": (("cifar10/test",), "CIFAR-10 test set: 10,000 32x32 JPEGs"),
    "bsds500-train": (
        ("bsds500/train", "bsds500/test"),
        "BSDS500 train+test: 400 481x321 photos (JPEG)",
    ),
    "bsds500-val": (("bsds500/val",), "BSDS500 validation: 100 481x321 photos (JPEG)"),
    "samples": (None, "6 photos bundled with scikit-image (no data root needed)"),
}


def list_datasets() -> dict[str, str]:
    """Named data sets and a one-line description of each."""
    return {k: v[1] for k, v in NAMED_DATASETS.items()}


def dataset_name(name: str) -> str:
    """How results and caches name the data set ``name``: a named one in lower case
    (``KODAK`` is ``kodak``), else a folder of images as its absolute path (the same folder
    given from another working directory is the same data set); anything else as it is."""
    if name.lower() in NAMED_DATASETS or not name:
        return name.lower()
    folder = folder_of(name)
    return str(folder.resolve()) if folder is not None else name


def folder_of(name: str) -> Path | None:
    """``name`` as an existing folder (``~`` expanded), else None (also for a ``~user`` that
    names no user)."""
    try:
        folder = Path(name).expanduser()
    except RuntimeError:  # ~nosuchuser
        return None
    return folder if folder.is_dir() else None


__all__ = [
    "CHANNELS",
    "CSI_MODES",
    "DM_DECODERS",
    "DM_STOPS",
    "FADING_GRIDS",
    "FADING_VARIANTS",
    "HIGHER_IS_BETTER",
    "IMAGE_FORMATS",
    "JSCC_MODELS",
    "LABELLED_OPTIONS",
    "LOSSES",
    "METRICS",
    "NAMED_DATASETS",
    "OPTION_FLAGS",
    "PLUGIN_GROUP",
    "REGISTERED_MCS",
    "RESUME_FREE",
    "RULES",
    "SCHEDULES",
    "SCHEMES",
    "SNR_LIMIT_DB",
    "SNR_SOURCES",
    "VAE_CBR",
    "available_formats",
    "dataset_name",
    "folder_of",
    "in_db",
    "list_datasets",
]
