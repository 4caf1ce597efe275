"""Export of a finished training run into the zoo: the checks that refuse an export that would
lose something (:func:`check_export`), the card's provenance copied from the run
(:func:`run_provenance`) and its lineage after the entry the run started from, and
:func:`export_to_zoo` (JSCC runs) that writes weights and card."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..paths import atomic_write_files, checkpoint_file, json_bytes
from .catalog import (
    CARD_FORMAT,
    ZOO_ENV,
    default_zoo_dir,
    list_checkpoints,
    resolve_weights,
    zoo_dirs,
)

if TYPE_CHECKING:
    import torch


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (a run folder: of its ``model.safetensors``)."""
    h = hashlib.sha256()
    with open(checkpoint_file(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_to_zoo(
    run_dir: str | Path,
    zoo_name: str,
    test_data: str | os.PathLike[str] | None = None,
    test_limit: int | None = None,
    test_snrs: list[float] | None = None,
    device: str | torch.device = "cpu",
    zoo_dir: str | Path | None = None,
    batch_size: int = 64,
    replace: bool = False,
    allow_unfinished: bool = False,
) -> Path:
    """Copy a finished JSCC run (``model.safetensors`` + ``card.json``) into the zoo.

    With ``test_data`` (a named data set, e.g. ``cifar10-test`` or ``kodak``, or a folder of
    images, which the card records as its absolute path) the codec is first evaluated
    through :class:`~semcom.link.AnalogLink` on the training channel at ``test_snrs``
    (default: the validation SNRs) and the PSNR goes into the card's ``test``. Returns the
    path of the written card. Files are written atomically.

    An existing entry is only overwritten with ``replace``; a run that has not reached the end
    of its schedule only with ``allow_unfinished`` (the card then says so). A run started with
    ``--init`` from an entry of this zoo (a continuation or an ADJSCC warm start) gets that
    entry's lineage: the command chained after the entry's own, the hours summed, and
    ``continued_from`` / ``warm_start_from`` with the entry's name, SHA-256 and test metrics.
    """
    from ..channels import Channel, format_cbr
    from ..codecs.jscc import load_jscc

    dest = Path(zoo_dir) if zoo_dir is not None else default_zoo_dir()
    run = Path(run_dir)
    card_path, weights = run / "card.json", run / "model.safetensors"
    for p in (card_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{str(p)!r} not found (is {str(run)!r} a training run?)")
    run_card = json.loads(card_path.read_text())
    if run_card.get("task") != "jscc":
        raise ValueError(f"{str(run)!r} is not a JSCC run (task {run_card.get('task')!r})")
    unfinished = check_export(run_card, run, dest, zoo_name, replace, allow_unfinished)
    data = weights.read_bytes()  # read once: what is tested, hashed and shipped
    check_same_checkpoint(run_card, _safetensors_metadata(data), run)
    codec = load_jscc(weights, device=device)
    behind = run_card.get("decoder_behind_dm")
    test: dict[str, Any] = {}
    if test_data is not None:
        from torch.utils.data import DataLoader, Subset

        from ..data import collate_images, dataset_name, get_dataset
        from ..train.jscc import evaluate_codec

        # as --test-data reads it: a named set in lower case, a folder by its absolute path
        test_data = dataset_name(os.fspath(test_data))

        full = get_dataset(test_data)
        n_total = len(full)
        ds = full if test_limit is None else Subset(full, list(range(min(test_limit, n_total))))
        same_size = test_data.startswith("cifar")
        loader = DataLoader(
            ds, batch_size=batch_size if same_size else 1, collate_fn=collate_images
        )
        snrs = list(dict.fromkeys(test_snrs or run_card["config"].get("val_snrs") or [10.0]))
        ch = run_card["channel"]
        receiver = None
        if behind:  # the decoder is tested behind the receiver it was trained behind
            from ..diffusion.registry import dm_receiver

            base = load_jscc(resolve_weights(behind["init"]), device=device)
            steps = int(run_card["config"].get("dm_steps", 1))
            den = resolve_weights(behind["denoiser"])
            skip = behind.get("skip_snr_db")  # absent in cards written before it was recorded
            receiver = dm_receiver(
                base, run_card["model"], den, device, steps=steps, skip_snr_db=skip
            )
        res = evaluate_codec(
            codec, loader, Channel(ch["name"], csi=ch["csi"]), snrs, seed=0, receiver=receiver
        )
        test = {
            "data": test_data,
            "n_images": len(ds),
            "n_total": n_total,  # the whole set's size: n_images is less with --test-limit
            "channel": ch,
            "snr_db": snrs,
            "psnr": [round(res[f"psnr@{s:g}dB"], 4) for s in snrs],
        }
    card = {
        "format": CARD_FORMAT,
        "name": zoo_name,
        "model": run_card["model"],
        "model_config": run_card["model_config"],
        "cbr": run_card["cbr"],
        "cbr_str": format_cbr(run_card["cbr"]),
        "channel": run_card["channel"],
        "snr_train": run_card["snr_train"],
        **({"decoder_behind_dm": behind} if behind else {}),
        "data": run_card["data"],
        "test": test,
        **run_provenance(run_card, unfinished),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    if not behind:  # a --behind-dm decoder's --init is its frozen encoder, not its lineage
        _add_lineage(card, run_card, dest)
    if sha256_file(weights) != card["sha256"]:
        raise ValueError(
            f"{str(weights)!r} changed during the export (is the run still writing "
            "checkpoints?): nothing was written; export it again"
        )
    out = dest / f"{zoo_name}.json"
    atomic_write_files({dest / f"{zoo_name}.safetensors": data, out: json_bytes(card)})
    return out


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's bytes (its header: an 8-byte little-endian
    length, then JSON); ``{}`` when unreadable (the loader then says why)."""
    try:
        n = int.from_bytes(data[:8], "little")
        return dict(json.loads(data[8 : 8 + n]).get("__metadata__") or {})
    except (ValueError, AttributeError, TypeError):
        return {}


def check_same_checkpoint(run_card: dict[str, Any], meta: dict[str, str], run: Path) -> None:
    """Refuse a run whose ``card.json`` and weights (safetensors metadata ``meta``) belong to
    different checkpoints: a run writing one right now, or one stopped between their renames."""
    step = meta.get("step")
    if step is not None and "step" in run_card and int(step) != int(run_card["step"]):
        raise ValueError(
            f"{str(run)!r}: card.json (step {run_card['step']}) and model.safetensors (step "
            f"{step}) are from different checkpoints: wait until the run has written its "
            "checkpoint, or resume it ('--resume') to write a whole one"
        )


def unfinished(run_card: dict[str, Any]) -> str | None:
    """Where a training run's card says it stopped before the end of its schedule (``"epoch e
    of E"``, plus ``", stopped at step s by --max-steps m"`` when its own limit stopped it), or
    None for a finished run (:func:`check_export` says what counts as finished)."""
    train = run_card.get("train", {})
    epoch, epochs = int(run_card.get("epoch", 0)), int(train.get("epochs", 0))
    if epoch >= epochs:
        return None
    where = f"epoch {epoch} of {epochs}"
    max_steps, step = train.get("max_steps"), int(run_card.get("step", 0))
    if max_steps is not None and step >= int(max_steps):  # stopped by its own --max-steps
        where += f", stopped at step {step} by --max-steps {max_steps}"
    return where


def check_entry_name(dest: Path, zoo_name: str) -> None:
    """``ValueError`` for a bad zoo name, or a zoo folder ``dest`` that is a file."""
    if not zoo_name or any(ch in zoo_name for ch in "/\\ ") or zoo_name.startswith("."):
        raise ValueError(f"invalid zoo name {zoo_name!r} (use letters, digits, - and _)")
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"zoo folder {str(dest)!r} is a file (--zoo-dir, or ${ZOO_ENV})")


def check_export(
    run_card: dict[str, Any],
    run: Path,
    dest: Path,
    zoo_name: str,
    replace: bool = False,
    allow_unfinished: bool = False,
) -> str | None:
    """Refuse an export that would lose something; return ``"epoch e of E"`` for an unfinished run.

    A run is finished when its checkpoint has completed every epoch of its schedule (the
    card's ``epoch`` is ``train.epochs``). One stopped before that by ``--max-steps`` (mid-epoch
    or at the end of an earlier epoch) is unfinished like one killed: its learning rate never
    reached the end of the schedule; its mark then also names the step and the limit
    (``"epoch e of E, stopped at step s by --max-steps m"``). A ``--max-steps`` that fell on the
    end of the last epoch leaves a finished run.

    Raises ``ValueError`` for a bad name or an unfinished run (unless ``allow_unfinished``) and
    ``FileExistsError`` for an existing entry (unless ``replace``).
    """
    check_entry_name(dest, zoo_name)
    if (dest / f"{zoo_name}.json").exists() and not replace:
        raise FileExistsError(
            f"zoo entry {zoo_name!r} exists in {str(dest)!r}: pass --replace to overwrite it"
        )
    for d in zoo_dirs():
        if d.resolve() != dest.resolve() and (d / f"{zoo_name}.json").exists():
            raise FileExistsError(
                f"zoo entry {zoo_name!r} exists in {str(d)!r}: give the new entry another name"
            )
    where = unfinished(run_card)
    if where is None:
        return None
    if not allow_unfinished:
        raise ValueError(
            f"{str(run)!r} has not finished its schedule ({where}): resume it with '--resume', "
            "or pass --allow-unfinished to ship it anyway (the card says so)"
        )
    return where


def val_when(card: dict[str, Any]) -> dict[str, int]:
    """``{"val_epoch": e, "val_step": s}``: the epoch and step after which the
    ``val_metrics`` of ``card`` (a run's or a zoo card) were measured, which with ``--val-every``
    may be earlier than its weights'. Read from the card, or from the last entry of its
    ``history`` (cards written before they were recorded); empty when neither says."""
    if "val_epoch" in card:
        return {k: card[k] for k in ("val_epoch", "val_step") if k in card}
    history = card.get("history")
    last = history[-1] if isinstance(history, list) and history else None
    if not isinstance(last, dict) or "epoch" not in last:
        return {}
    return {"val_epoch": last["epoch"], **({"val_step": last["step"]} if "step" in last else {})}


def run_provenance(run_card: dict[str, Any], unfinished: str | None = None) -> dict[str, Any]:
    """The fields a zoo card copies from its run's card: validation metrics and when they were
    measured (:func:`val_when`), the command (and its resumes), hours (and setup_hours, the
    data preparation before training, when the run recorded it), hardware, seed, epochs,
    steps, git commit, train and task config, and ``unfinished`` (from :func:`check_export`)
    when set."""
    rc = run_card
    return {
        "val_metrics": rc.get("val_metrics", {}),
        **val_when(rc),
        "command": rc.get("command", ""),
        **({"resumed_with": rc["resumed_with"]} if rc.get("resumed_with") else {}),
        "hours": rc.get("hours", 0.0),
        **({"setup_hours": rc["setup_hours"]} if "setup_hours" in rc else {}),
        "hardware": rc.get("hardware", "unknown"),
        "seed": rc.get("seed"),
        "epochs": rc.get("epoch"),
        "steps": rc.get("step"),
        "git_commit": rc.get("git_commit", "unknown"),
        "train": rc.get("train", {}),
        "config": rc.get("config", {}),
        **({"unfinished": unfinished} if unfinished else {}),
    }


def _last_out(command: str) -> str | None:
    """The last ``--out DIR`` (or ``--out=DIR``) of a (chained) training command, or None."""
    words, out = shlex.split(command), None
    for i, w in enumerate(words):
        if w == "--out" and i + 1 < len(words):
            out = words[i + 1]
        elif w.startswith("--out="):
            out = w.removeprefix("--out=")
    return out


def _with_init(command: str, init: str, new: str) -> str:
    """``command`` (one shell command, as :func:`shlex.join` writes it) with the value ``init``
    of ``--init`` (or ``--init=``) replaced by ``new``, quoted again."""
    words = shlex.split(command)
    for i, w in enumerate(words):
        if w == "--init" and i + 1 < len(words) and words[i + 1] == init:
            words[i + 1] = new
        elif w == f"--init={init}":
            words[i] = f"--init={new}"
    return shlex.join(words)


def _add_lineage(card: dict[str, Any], run_card: dict[str, Any], dest: Path) -> None:
    """Chain ``card`` after the zoo entry its run started from (``--init``), if any: one of
    ``dest``, else of the zoo folders (:func:`zoo_dirs`).

    The entry is matched by name or by the SHA-256 of the ``--init`` file, and accepted only if
    its weights are still those the run started from (``init_fingerprint``). Otherwise the card
    records ``init`` (the reference and fingerprint) alone.
    """
    from ..codecs.jscc import load_jscc
    from ..fingerprint import codec_fingerprint

    init, fp = run_card.get("init"), run_card.get("init_fingerprint")
    if not init:
        return
    f = checkpoint_file(init)
    init_sha = sha256_file(f) if f.is_file() else None
    # the destination's entries, then the other zoo folders' (a user zoo entry continuing a
    # shipped one chains after it)
    entries = list_checkpoints(dest)
    entries += [e for e in list_checkpoints() if e.weights.parent.resolve() != dest.resolve()]
    if init_sha is None and all(e.name != init for e in entries):
        warnings.warn(
            f"the run started from --init {init!r}, neither a zoo entry nor a file from here: "
            "the card records it without its lineage (run 'zoo add' where the run was trained)",
            stacklevel=2,
        )
    prev: dict[str, Any] | None = None
    for e in entries:
        if e.model in ("deepjscc", "adjscc") and "decoder_behind_dm" not in e.card:
            if e.name == init or (init_sha is not None and e.card.get("sha256") == init_sha):
                if codec_fingerprint(load_jscc(e.weights)) == fp:
                    prev = e.card
                    break
    if prev is None:
        card["init"] = {"ref": init, "fingerprint": fp}
        return
    own = card["command"]
    prev_out = _last_out(prev["command"])
    if prev_out is not None and init == prev["name"]:  # the chain names the stage's own output
        own = _with_init(own, init, prev_out)
    key = "continued_from" if prev["model"] == card["model"] else "warm_start_from"
    card[key] = {
        "zoo_name": prev["name"],
        "sha256": prev.get("sha256"),
        "fingerprint": fp,
        "command": prev["command"],
        "hours": prev["hours"],
        "epochs": prev.get("epochs"),
        "steps": prev.get("steps"),
        "test": prev.get("test"),
    }
    if key == "continued_from" and "warm_start_from" in prev:
        card["warm_start_from"] = prev["warm_start_from"]
    card["command"] = f"{prev['command']} && {own}"
    card["stage_hours"] = card["hours"]
    card["hours"] = round(card["hours"] + prev["hours"], 5)
    card["stage_hardware"] = card.get("hardware", "unknown")
    card["hardware"] = chain_hardware(prev.get("hardware", "unknown"), card["stage_hardware"])


def _device_kind(hardware: str) -> str:
    """The device of a ``hardware`` string (``"1 x CPU x86_64 (2 cores, 1 threads/process),
    torch 2.13.0+cpu"`` -> ``"1 x CPU x86_64"``): the part that thread counts do not change."""
    return re.sub(r"\s*\(.*?\)", "", hardware.split(", torch")[0]).strip()


def chain_hardware(before: str, stage: str) -> str:
    """The ``hardware`` of a chain of stages: ``before`` (the chain so far), then ``stage``
    when it ran on another device (``"CPU ..., then 1 x NVIDIA H200, ..."``), else ``before``."""
    last = before.rsplit(", then ", 1)[-1]
    if _device_kind(last) == _device_kind(stage):
        return before
    return f"{before}, then {stage}"


__all__ = [
    "chain_hardware",
    "check_entry_name",
    "check_export",
    "check_same_checkpoint",
    "export_to_zoo",
    "run_provenance",
    "sha256_file",
    "unfinished",
    "val_when",
]
