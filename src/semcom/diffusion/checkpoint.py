"""Denoiser checkpoints: load with checks (codec, latent channels, P0), ship to the zoo.

A denoiser checkpoint is the ``model.safetensors`` of a ``semcom train denoiser`` run: weights
plus metadata ``task="denoiser"``, ``codec`` (e.g. ``vae``), ``cbr`` and ``denoiser_config``
(JSON of :class:`~semcom.diffusion.denoiser.DenoiserConfig`, including the measured ``p0``).
Loading never unpickles code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open

from ..fingerprint import codec_fingerprint
from ..paths import atomic_write_files, checkpoint_file, json_bytes, safetensors_bytes
from .denoiser import DenoiserConfig, LatentUNet

if TYPE_CHECKING:
    from ..zoo import ZooEntry


def resolve_checkpoint(path: str | Path, task: str) -> Path:
    """The safetensors file of ``path``: a ``.safetensors`` file, a run folder or a zoo name
    (``semcom zoo list``); ``ValueError`` when it is none of them."""
    p = checkpoint_file(path)
    if p.is_file():
        return p
    from ..zoo import resolve_weights

    try:
        return checkpoint_file(resolve_weights(path))
    except ValueError:
        raise ValueError(
            f"{task} checkpoint {str(p)!r} not found (neither a file, a run folder nor a zoo "
            "name: 'semcom zoo list')"
        ) from None


def read_checkpoint(
    path: str | Path, task: str, config_key: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Weights and metadata of a latent-model safetensors file of ``task`` (``ValueError`` if not).

    ``path`` is a ``model.safetensors``, a run folder or a zoo name; ``config_key`` is the
    metadata entry holding the architecture JSON (``denoiser_config``, ``estimator_config``).
    """
    p = resolve_checkpoint(path, task)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            weights = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise ValueError(f"corrupt or unreadable {task} checkpoint {str(p)!r}: {e}") from e
    if meta.get("task") != task and (meta.get("task") == "jscc" or "model" in meta):
        raise ValueError(
            f"{str(p)!r} is a {meta.get('model', 'JSCC')} codec checkpoint, not a {task} "
            "(give it as --codec)"
        )
    if meta.get("task") == task and config_key not in meta and "network" in meta:
        raise ValueError(
            f"{str(p)!r} holds a {task} network of your own ({meta['network']}), not semcom's: "
            "load its weights into that network (safetensors.torch.load_file) and use it "
            "directly (e.g. semcom.diffusion.DiffusionReceiver(net))"
        )
    if meta.get("task") != task or config_key not in meta:
        raise ValueError(
            f"{str(p)!r} is not a {task} checkpoint (task {meta.get('task')!r}); "
            f"train one with 'semcom train {task}'"
        )
    return weights, meta


def read_denoiser(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Weights and metadata of a denoiser safetensors file (``ValueError`` if unusable)."""
    return read_checkpoint(path, "denoiser", "denoiser_config")


def check_codec_weights(path: str | Path, what: str, codec: torch.nn.Module | str) -> None:
    """Refuse a latent model trained on the latents of other weights of the same codec (a
    retrained DeepJSCC of the same name and CBR); ``codec``: the codec or its fingerprint.
    Checkpoints without a recorded fingerprint (trained before it was recorded) pass."""
    with safe_open(str(checkpoint_file(path)), framework="pt") as f:
        recorded = (f.metadata() or {}).get("codec_fingerprint", "")
    now = codec if isinstance(codec, str) else codec_fingerprint(codec)
    if recorded and recorded != now:
        raise ValueError(
            f"{what} {str(path)!r} was trained on latents of codec weights {recorded}, but this "
            f"codec's weights are {now}: retrain it on this codec ('semcom train ...') or give one "
            "trained on it"
        )


def check_trained_on(
    path: str | Path, meta: dict[str, str], what: str, codec: str | None, cbr: str | None
) -> None:
    """Refuse a latent model whose metadata names another codec (or CBR) than the receiver's."""
    trained_on = meta.get("codec", "?")
    trained_cbr = meta.get("cbr", "None")
    if codec is not None and trained_on != codec:
        raise ValueError(
            f"{what} {str(path)!r} was trained on latents of codec {trained_on!r}, "
            f"not {codec!r}: train one for {codec!r} with 'semcom train {meta.get('task')} "
            f"--codec {codec}'"
        )
    if cbr is not None and trained_cbr not in ("None", str(cbr)):
        raise ValueError(
            f"{what} {str(path)!r} was trained on {trained_on} latents at CBR {trained_cbr}, "
            f"not {cbr}"
        )


def load_denoiser(
    path: str | Path,
    codec: str | None = None,
    cbr: float | str | None = None,
    latent_channels: int | None = None,
    device: str | torch.device = "cpu",
    codec_weights: torch.nn.Module | str | None = None,
) -> LatentUNet:
    """Load a denoiser, refusing one trained on another codec's latents.

    Args:
        path: a zoo name (``semcom zoo list``, user zoo included), a run folder or a
            ``model.safetensors``.
        codec, cbr: the codec (and CBR, for JSCC codecs) the receiver decodes with; a
            checkpoint trained on other latents raises ``ValueError`` naming both. That
            includes other weights of the same codec and CBR (a retrained DeepJSCC):
            ``codec_weights`` (the codec module, or its
            :func:`~semcom.fingerprint.codec_fingerprint`) are the weights checked against
            (the scheme builders pass their codec); without it other weights of the same
            codec and CBR are not detected (one CBR may have several zoo codecs, e.g. the
            ``-long`` variants). Checkpoints recording no fingerprint pass.
        latent_channels: latent channel count of that codec (checked too).
        device: where the model goes (ValueError for a device this machine lacks).

    The network runs channels-last (:meth:`LatentUNet.channels_last`: faster on a CPU).
    """
    net = load_latent_model(
        path, "denoiser", "denoiser_config", DenoiserConfig, LatentUNet, "denoiser",
        codec, cbr, latent_channels, device, codec_weights,
    )  # fmt: skip
    return net.channels_last()


def load_latent_model(
    path: str | Path,
    task: str,
    config_key: str,
    config_cls,
    model_cls,
    what: str,
    codec: str | None = None,
    cbr: float | str | None = None,
    latent_channels: int | None = None,
    device: str | torch.device = "cpu",
    codec_weights: torch.nn.Module | str | None = None,
):
    """Load a latent model (denoiser, SNR estimator) of ``task``, with every check.

    Refuses (``ValueError`` naming ``what`` and the file) another task's checkpoint, one trained
    on another codec's (or CBR's) latents, a latent channel count other than
    ``latent_channels``, and weights that do not fit the stored config (``config_key`` JSON,
    built with ``config_cls.from_dict``). Weights are cast to float32 (zoo files are float16).
    Returns ``model_cls(config)`` in eval mode without gradients, on ``device`` (ValueError,
    before anything is read, for a device this machine lacks, as ``--device``). With
    ``codec_weights`` (a codec or its fingerprint), one trained on other weights of that codec
    is refused too (:func:`check_codec_weights`).
    """
    from ..devices import parse_device

    device = parse_device(str(device))
    path = resolve_checkpoint(path, task)
    weights, meta = read_checkpoint(path, task, config_key)
    cfg = config_cls.from_dict(json.loads(meta[config_key]))
    check_trained_on(path, meta, what, codec, cbr_key(cbr))
    if latent_channels is not None and cfg.channels != latent_channels:
        raise ValueError(
            f"{what} {str(path)!r} expects {cfg.channels}-channel latents, the codec has "
            f"{latent_channels}"
        )
    if codec_weights is not None:
        check_codec_weights(path, what, codec_weights)
    model = model_cls(cfg)
    try:
        model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{what} {str(path)!r} does not match its stored config: {e}") from e
    return model.eval().requires_grad_(False).to(device)


def find_latent_model(
    model: str,
    codec: str,
    cbr: float | str | None = None,
    zoo_dir: str | Path | None = None,
    fingerprint: str | None = None,
) -> ZooEntry:
    """The shipped zoo entry of a latent model (``denoiser``, ``snr-estimator``) for ``codec``.

    ``fingerprint``: the codec weights' (:func:`~semcom.fingerprint.codec_fingerprint`); the
    first entry (shipped ones first) trained on those weights or recording none (trained
    before fingerprints were recorded, as :func:`check_codec_weights` lets pass) is preferred,
    so a codec variant finds its own and a user's entry never displaces a shipped one; else
    the first one (whose weight check then names the mismatch)."""
    from ..zoo import list_checkpoints

    cbr = cbr_key(cbr)
    cands = [
        e
        for e in list_checkpoints(zoo_dir)
        if e.model == model
        and e.card.get("codec", {}).get("name") == codec
        and (cbr is None or str(e.card.get("codec", {}).get("cbr")) in (str(cbr), "None"))
    ]
    if not cands:
        raise ValueError(
            f"no {model} for codec {codec!r}" + (f" at CBR {cbr}" if cbr else "") + " in the "
            f"zoo; train one with 'semcom train {model}' and add it with 'semcom zoo add RUN "
            "NAME' (see 'semcom zoo list')"
        )
    if fingerprint is not None:
        for e in cands:
            if e.card.get("codec", {}).get("fingerprint") in (fingerprint, None):
                return e
    return cands[0]


def cbr_key(cbr: float | str | None) -> str | None:
    """A CBR given as a number or text (``0.0625``, ``"0.0625"``, ``"1/16"``) in the one
    spelling latent models are filed under (``"1/16"``); None stays None."""
    from ..channels import format_cbr, parse_cbr

    return None if cbr is None else format_cbr(parse_cbr(cbr))


def latent_cbr_key(base: str, cbr: float | None) -> str | None:
    """The CBR under which latent models (denoiser, SNR estimator) of codec ``base`` are filed:
    the printed CBR of a JSCC codec; None for TAEF2 (``vae``, one latent size) or unknown."""
    from ..channels import format_cbr

    return None if base == "vae" or cbr is None else format_cbr(cbr)


def find_denoiser(
    codec: str,
    cbr: float | str | None = None,
    zoo_dir: str | Path | None = None,
    fingerprint: str | None = None,
) -> ZooEntry:
    """The shipped zoo entry of the denoiser for ``codec`` (``ValueError`` if none; see
    :func:`find_latent_model` for ``fingerprint``)."""
    return find_latent_model("denoiser", codec, cbr, zoo_dir, fingerprint)


def export_latent_model(
    run_dir: str | Path,
    zoo_name: str,
    task: str,
    config_key: str,
    test: dict[str, Any] | None = None,
    zoo_dir=None,
    replace: bool = False,
    allow_unfinished: bool = False,
) -> Path:
    """Copy a finished latent-model run (denoiser, SNR estimator) into the zoo.

    Writes ``<zoo_name>.safetensors`` (float16; loading casts back) and ``<zoo_name>.json``
    (card: config, codec, P0, data, command, hours, hardware, validation history, ``test``;
    default ``test``: the run's last validation metrics per SNR). An existing entry is only
    overwritten with ``replace``, an unfinished run only shipped with ``allow_unfinished``.
    """

    from ..channels import format_cbr, parse_cbr
    from ..zoo import (
        CARD_FORMAT,
        check_export,
        check_same_checkpoint,
        default_zoo_dir,
        run_provenance,
    )

    run = Path(run_dir)
    dest = Path(zoo_dir) if zoo_dir is not None else default_zoo_dir()
    weights, meta = read_checkpoint(run, task, config_key)
    rc = json.loads((run / "card.json").read_text())
    unfinished = check_export(rc, run, dest, zoo_name, replace, allow_unfinished)
    check_same_checkpoint(rc, meta, run)
    codec = dict(rc["codec"])
    if meta.get("codec_fingerprint"):
        codec["fingerprint"] = meta["codec_fingerprint"]
    codec_cbr = 1 / 12 if codec["name"] == "vae" else parse_cbr(codec["cbr"])
    card = {
        "format": CARD_FORMAT,
        "name": zoo_name,
        "model": task,
        "model_config": json.loads(meta[config_key]),
        "codec": codec,
        "p0": rc.get("p0"),
        "cbr": codec_cbr,
        "cbr_str": format_cbr(codec_cbr),
        "channel": {"name": "any", "csi": "n/a"},
        "snr_train": ":".join(f"{s:g}" for s in rc["config"]["snr_range"]),
        "data": rc["data"],
        "test": test or validation_test(rc),
        "history": rc.get("history", []),
        **run_provenance(rc, unfinished),
    }
    _add_latent_lineage(card, rc)
    blob = safetensors_bytes({k: v.half() for k, v in weights.items()}, meta)
    card["sha256"] = hashlib.sha256(blob).hexdigest()
    card["dtype"] = "float16"
    out = dest / f"{zoo_name}.json"
    atomic_write_files({dest / f"{zoo_name}.safetensors": blob, out: json_bytes(card)})
    return out


def _add_latent_lineage(card: dict[str, Any], run_card: dict[str, Any]) -> None:
    """Chain ``card`` after the stage its run started from (``--init``, e.g. an SNR estimator
    trained on crops before its head was calibrated on whole latents).

    When the init is a run folder with its ``card.json`` (or a zoo entry) whose weights still
    hash to ``init_sha256``, the card's command becomes ``<its command> && <this command>``,
    hours add up (``stage_hours`` keeps this stage's) and ``continued_from`` summarises it;
    otherwise only ``init`` (reference and hash) is recorded.
    """
    from ..zoo import list_checkpoints, sha256_file, val_when

    init, sha = run_card.get("init"), run_card.get("init_sha256")
    if not init:
        return
    prev: dict[str, Any] | None = None
    p = Path(init)
    if p.is_dir() and (p / "card.json").is_file() and (p / "model.safetensors").is_file():
        if sha256_file(p / "model.safetensors") == sha:
            prev = json.loads((p / "card.json").read_text())
    else:
        for e in list_checkpoints():
            if e.name == init and sha256_file(e.weights) == sha:
                prev = e.card
    if prev is None:
        card["init"] = {"ref": init, "sha256": sha}
        return
    card["continued_from"] = {
        "ref": init,
        "sha256": sha,
        "command": prev.get("command", ""),
        "hours": prev.get("hours", 0.0),
        "epochs": prev.get("epochs", prev.get("epoch")),
        "steps": prev.get("steps", prev.get("step")),
        "val_metrics": prev.get("val_metrics", {}),
        **val_when(prev),
    }
    card["command"] = f"{prev.get('command', '')} && {card['command']}"
    card["stage_hours"] = card["hours"]
    card["hours"] = round(card["hours"] + prev.get("hours", 0.0), 5)


def validation_test(run_card: dict[str, Any]) -> dict[str, Any]:
    """A latent-model card's ``test`` from its run's last validation: ``gain_db`` (denoisers:
    latent-MSE gain over LMMSE) or ``rmse_db`` (SNR estimators) per validation SNR (dB), and
    the epoch and step it was measured after (``val_epoch``, ``val_step``: with ``--val-every``
    maybe before the last, :func:`~semcom.zoo.val_when`) when the run card says."""
    from ..zoo import val_when

    vm = run_card.get("val_metrics") or {}
    for metric in ("gain_db", "rmse_db"):
        pre = metric + "@"
        at = {float(k[len(pre) : -2]): v for k, v in vm.items() if k.startswith(pre)}
        if at:
            snrs = sorted(at)
            val = (run_card.get("data") or {}).get("val", "?")
            return {"data": f"{val} (the run's validation latents)", "snr_db": snrs,
                    metric: [at[s] for s in snrs], **val_when(run_card)}  # fmt: skip
    return {}


def export_denoiser(
    run_dir: str | Path,
    zoo_name: str,
    test: dict[str, Any] | None = None,
    zoo_dir=None,
    replace: bool = False,
    allow_unfinished: bool = False,
) -> Path:
    """Copy a finished denoiser run into the zoo (weights + card with config, data, P0)."""
    return export_latent_model(
        run_dir, zoo_name, "denoiser", "denoiser_config", test, zoo_dir, replace, allow_unfinished
    )
