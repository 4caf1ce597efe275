"""The model zoo: trained checkpoints shipped with semcom.

Each entry is a pair in ``semcom/zoo/checkpoints/`` (package data):

* ``<name>.safetensors``: the weights, with the architecture in the file's metadata
  (``model``, ``c``, ``width``);
* ``<name>.json``: the model card: ``name``, ``model``, ``model_config``, ``cbr``,
  ``channel``, ``snr_train``, ``data``, ``test`` (data set, SNRs, PSNR), ``command``
  (how it was trained), ``hours``, ``hardware``, ``seed``, ``git_commit``, ``sha256``.

Your own entries go to a *user zoo*: the folders named in ``SEMCOM_ZOO`` (``os.pathsep``
separated) are searched after the shipped one, and ``semcom zoo add`` writes into the first of
them (without it: into the shipped folder, for a checkout that ships models). A user entry is
found by its name (``--codec NAME``, ``--denoiser NAME``) and by the fingerprint of the codec it
was trained on (a denoiser, SNR estimator or decoder for your codec); it is a scheme's default
only at a CBR nothing shipped serves (a shipped entry stays its CBR's default); a name in two
zoo folders is refused.

``semcom zoo list`` prints them; :func:`load_codec` loads the codec for a model and CBR
(used by the ``deepjscc`` / ``adjscc`` schemes); ``semcom zoo add RUN NAME`` (:func:`export_to_zoo`
for JSCC runs) turns a finished run folder into a zoo entry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..locking import OutputLock
from ..paths import atomic_write_files, card_file, checkpoint_file, json_bytes, json_text

if TYPE_CHECKING:
    import torch

    from ..codecs.jscc import DeepJSCC

ZOO_DIR = Path(__file__).resolve().parent / "checkpoints"
CARD_FORMAT = "semcom-zoo-v1"
#: environment variable naming the user zoo folders (``os.pathsep`` separated)
ZOO_ENV = "SEMCOM_ZOO"


def user_zoo_dirs() -> list[Path]:
    """The user zoo folders named in ``$SEMCOM_ZOO`` (in order; [] when unset)."""
    return [Path(p).expanduser() for p in os.environ.get(ZOO_ENV, "").split(os.pathsep) if p]


def zoo_dirs(zoo_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for zoo entries: ``zoo_dir`` alone when given, else the shipped
    zoo followed by the user zoo folders (:func:`user_zoo_dirs`)."""
    if zoo_dir is not None:
        return [Path(zoo_dir)]
    return [Path(ZOO_DIR), *user_zoo_dirs()]


def default_zoo_dir() -> Path:
    """Where ``semcom zoo add`` writes without ``--zoo-dir``: the first user zoo folder, or
    the shipped zoo when ``$SEMCOM_ZOO`` is unset (a checkout shipping a model)."""
    users = user_zoo_dirs()
    return users[0] if users else Path(ZOO_DIR)


@dataclass(frozen=True)
class ZooEntry:
    """One zoo checkpoint, shipped or in a user zoo folder (fields from its JSON card).

    Attributes:
        name: the zoo name (``--codec NAME``); model: ``deepjscc``, ``adjscc``, ``denoiser``
            or ``snr-estimator``.
        cbr: the codec's CBR, complex channel uses per real source value (1/16: 0.0625).
        channel: the training channel; snr_train: its SNR in dB as text (``"10"`` or a range
            ``"-5:20"``); data: the training set.
        test: the card's test results (``psnr`` in dB per ``snr_db``, ...).
        command, hours, hardware: how it was trained (wall-clock hours).
        weights: its ``.safetensors`` file; card: the whole card.
    """

    name: str
    model: str
    cbr: float
    channel: str
    snr_train: str
    data: str
    test: dict[str, Any]
    command: str
    hours: float
    hardware: str
    weights: Path
    card: dict[str, Any] = field(repr=False)

    @property
    def user(self) -> bool:
        """Whether the entry is in a user zoo folder (``$SEMCOM_ZOO``), not shipped."""
        here = self.weights.parent.resolve()
        return any(here == d.resolve() for d in user_zoo_dirs())

    @property
    def test_psnr(self) -> float | None:
        """Test PSNR (dB) at the middle of the card's test SNRs: the training SNR (the middle
        of the range for ADJSCC) for a default export; None without a PSNR."""
        v = self.test.get("psnr")
        if not v:
            return None
        return float(v[len(v) // 2])

    def summary(self) -> str:
        """The test result in words, e.g. ``31.20 dB @ 10 dB (cifar10-test)``; a latent model's
        (its run's validation) names the epoch it was measured after when that is not the
        weights' (``--val-every``)."""
        p = self.test_psnr
        if p is None:
            e, done = self.test.get("val_epoch"), self.card.get("epochs")
            when = ""
            if isinstance(e, int) and isinstance(done, int) and e != done:
                when = f" (validated after epoch {e}, the weights are epoch {done}'s)"
            gains = self.test.get("gain_db")
            if gains:  # denoisers: latent-MSE gain over the LMMSE receiver per test SNR
                snrs = self.test.get("snr_db") or []
                at = "/".join(f"{s:g}" for s in snrs)
                return f"latent gain {'/'.join(f'{g:+.2f}' for g in gains)} dB @ {at} dB{when}"
            rmse = self.test.get("rmse_db")
            if rmse:  # SNR estimators: estimation error in dB over the test SNRs
                rms = (sum(r * r for r in rmse) / len(rmse)) ** 0.5
                snrs = self.test.get("snr_db") or [0]
                return f"SNR RMSE {rms:.2f} dB over {min(snrs):g}..{max(snrs):g} dB{when}"
            return "-"
        snrs = self.test.get("snr_db", [])
        s = snrs[len(snrs) // 2] if snrs else "?"
        data = self.test.get("data", "?")
        n = self.test.get("n_images")
        whole = self.test.get("n_total", _FULL_TEST_SETS.get(str(data)))
        if isinstance(n, int) and isinstance(whole, int) and n < whole:  # --test-limit
            data = f"{data}, {n} image{'s' if n != 1 else ''}"
        return f"{p:.2f} dB @ {s:g} dB ({data})"


#: image counts of the whole test sets, for cards written before ``n_total`` was recorded
_FULL_TEST_SETS = {"kodak": 24, "cifar10-test": 10000}


def _entry(path: Path) -> ZooEntry:
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"corrupt zoo card {str(path)!r}: {e}") from e
    try:
        ch = card["channel"]
        data = _train_name(card["data"])
        if data is None:
            raise KeyError("data: no training set named")
        return ZooEntry(
            name=card["name"],
            model=card["model"],
            cbr=float(card["cbr"]),
            channel=ch["name"] if isinstance(ch, dict) else str(ch),
            snr_train=str(card["snr_train"]),
            data=data,
            test=dict(card.get("test") or {}),
            command=card.get("command", ""),
            hours=float(card.get("hours", 0.0)),
            hardware=card.get("hardware", "unknown"),
            weights=path.with_suffix(".safetensors"),
            card=card,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"zoo card {str(path)!r} lacks a field or has a bad value: {e}") from e


def list_checkpoints(zoo_dir: str | Path | None = None) -> list[ZooEntry]:
    """All zoo entries: those of each folder of :func:`zoo_dirs` sorted by model, CBR and
    name, the shipped ones first ([] when there are none). Raises ValueError when a name is
    in two folders (which one ``--codec NAME`` meant would depend on the order)."""
    out: list[ZooEntry] = []
    seen: dict[str, Path] = {}
    for d in zoo_dirs(zoo_dir):
        if not d.is_dir():
            continue
        entries = [_entry(p) for p in sorted(d.glob("*.json"))]
        for e in sorted(entries, key=lambda e: (e.model, -e.cbr, e.name)):
            if e.name in seen:
                raise ValueError(
                    f"zoo entry {e.name!r} is in {str(seen[e.name])!r} and {str(d)!r} "
                    f"(${ZOO_ENV}): rename one of them"
                )
            seen[e.name] = d
            out.append(e)
    return out


def shipped_cbrs(model: str, zoo_dir: str | Path | None = None) -> tuple[float, ...]:
    """CBRs with a shipped checkpoint of ``model`` (largest first)."""
    return tuple(
        sorted({e.cbr for e in list_checkpoints(zoo_dir) if e.model == model}, reverse=True)
    )


def shipped_denoiser_cbrs(codec: str, zoo_dir: str | Path | None = None) -> tuple[float, ...]:
    """CBRs with a shipped denoiser for the latents of codec ``codec`` (largest first);
    KeyError, TypeError or ValueError for a card without a readable codec CBR."""
    from ..channels import parse_cbr

    found = {
        parse_cbr(e.card["codec"]["cbr"])
        for e in list_checkpoints(zoo_dir)
        if e.model == "denoiser" and e.card.get("codec", {}).get("name") == codec
    }
    return tuple(sorted(found, reverse=True))


def find_checkpoint(
    model: str,
    cbr: float | str | None = None,
    channel: str | None = None,
    zoo_dir: str | Path | None = None,
) -> ZooEntry:
    """The zoo entry for ``model`` at ``cbr`` (and training ``channel``).

    ``cbr=None`` is allowed when exactly one CBR is shipped. Several entries at one CBR: the
    AWGN-trained one first, then the first by name (a variant ``<name>-long`` sorts after its
    base ``<name>``, which stays the default; variants are chosen by name, ``--codec NAME``).
    Raises ValueError listing the shipped CBRs when nothing matches (or saying that none are
    shipped yet).
    """
    from ..channels import format_cbr, parse_cbr

    cbr = None if cbr is None else parse_cbr(cbr)  # 1/16, "1/16" and "0.0625" alike
    if model == "vae":
        raise ValueError(
            "the vae codec is the pretrained TAEF2, not a zoo checkpoint: "
            "semcom.codecs.taef2.load_taef2(device)"
        )
    from ..codecs.jscc import MODELS

    if model not in MODELS:
        raise ValueError(f"unknown codec model {model!r}; zoo codecs: {', '.join(MODELS)}")
    cands = [e for e in _codec_entries(list_checkpoints(zoo_dir)) if e.model == model]
    if channel is not None:
        cands = [e for e in cands if e.channel == channel]
    if not cands:
        where = f" trained on {channel}" if channel else ""
        raise ValueError(
            f"no {model} checkpoints{where} shipped yet: train one with 'semcom train jscc "
            f"--model {model} ...' and add it with 'semcom zoo add RUN NAME'"
        )
    cbrs = sorted({e.cbr for e in cands}, reverse=True)
    listing = ", ".join(format_cbr(c) for c in cbrs)
    if cbr is None:
        if len(cbrs) > 1:
            raise ValueError(f"{model}: give a CBR; shipped: {listing}")
        cbr = cbrs[0]
    match = [e for e in cands if _same_cbr(e.cbr, cbr)]
    if not match:
        raise ValueError(
            f"no {model} checkpoint for CBR {format_cbr(cbr)}; shipped CBRs: {listing}"
        )
    match.sort(key=_preference)
    return match[0]


def _same_cbr(have: float, want: float) -> bool:
    """``have`` is the CBR ``want`` (within rounding of the CBR's printed form)."""
    return abs(have - want) <= 1e-3 * want + 1e-6


def _preference(e: ZooEntry) -> tuple[bool, bool, str]:
    """Order among codec entries at one CBR: shipped first (a user entry does not displace
    the shipped default; it is loaded by name), then AWGN-trained, then by name."""
    return (e.user, e.channel != "awgn", e.name)


def _codec_entries(entries: list[ZooEntry]) -> list[ZooEntry]:
    """The entries :func:`find_checkpoint` chooses from: every checkpoint but the decoders
    trained behind a diffusion receiver (found by :func:`find_dm_decoder` only)."""
    return [e for e in entries if not e.card.get("decoder_behind_dm")]


def _variants(entries: list[ZooEntry]) -> set[str]:
    """Names of the codec entries that are not their CBR's default (loaded by name only)."""
    groups: dict[tuple[str, float], list[ZooEntry]] = {}
    for e in _codec_entries(entries):
        if e.model in ("deepjscc", "adjscc"):
            groups.setdefault((e.model, round(e.cbr, 6)), []).append(e)
    return {e.name for g in groups.values() for e in sorted(g, key=_preference)[1:]}


def find_dm_decoder(
    model: str,
    cbr: float,
    denoiser_sha256: str,
    zoo_dir: str | Path | None = None,
    users: bool = True,
) -> ZooEntry | None:
    """The shipped ``model`` codec at ``cbr`` whose decoder was trained behind the diffusion
    receiver with the denoiser of that SHA-256 (``semcom train jscc --behind-dm``), or None.

    A shipped entry comes first; a user zoo's (``$SEMCOM_ZOO``) only with ``users`` (the
    caller passes False behind a shipped denoiser: there a user's decoder would change what the
    default ``X+dm`` runs under the same label; it is loaded by name, ``--dm-decoder NAME``)."""
    for e in sorted(list_checkpoints(zoo_dir), key=lambda e: e.user):
        info = e.card.get("decoder_behind_dm") or {}
        if (
            (users or not e.user)
            and e.model == model
            and _same_cbr(e.cbr, cbr)
            and info.get("denoiser_sha256") == denoiser_sha256
        ):
            return e
    return None


def _named(ref: str | Path, zoo_dir: str | Path | None = None) -> ZooEntry | None:
    """The zoo entry called ``ref``, or None when ``ref`` names none."""
    return next((e for e in list_checkpoints(zoo_dir) if e.name == str(ref)), None)


def resolve_weights(ref: str | Path, zoo_dir: str | Path | None = None) -> str:
    """A checkpoint reference -> its weights file: a zoo name (``semcom zoo list``) or a path."""
    entry = _named(ref, zoo_dir)
    if entry is not None:
        return str(entry.weights)
    if Path(ref).exists():
        return str(ref)
    raise ValueError(f"{str(ref)!r} is neither a zoo name ('semcom zoo list') nor a file")


def init_ref(ref: str | Path, zoo_dir: str | Path | None = None) -> str:
    """How a run's card records the checkpoint it started from: a zoo name as it is, a path
    made absolute (a relative one would point elsewhere from another working directory, where
    ``zoo add`` may run)."""
    return str(ref) if _named(ref, zoo_dir) is not None else str(Path(ref).resolve())


def zoo_ref(path: str | Path) -> str:
    """The portable name of a weights file: its zoo name when it ships in the zoo, else the path."""
    p = Path(path).resolve()
    return p.stem if p.parent == Path(ZOO_DIR).resolve() else str(path)


def load_codec(
    model: str,
    cbr: float | str | None = None,
    device: str | torch.device = "cpu",
    channel: str | None = None,
    zoo_dir: str | Path | None = None,
    ref: str | Path | None = None,
) -> DeepJSCC:
    """Load the ``model`` codec (``deepjscc`` | ``adjscc``) in eval mode: the shipped one for
    ``cbr``, or ``ref`` (a zoo name, a run folder or a ``.safetensors`` file; ``cbr``, when
    given, must then be the checkpoint's: ValueError naming both otherwise). ValueError too
    for a ``device`` this machine lacks (as ``--device``), before anything is read."""
    from ..channels import format_cbr, parse_cbr
    from ..codecs.jscc import channels_for_cbr, load_jscc
    from ..devices import parse_device

    device = parse_device(str(device))
    cbr = None if cbr is None else parse_cbr(cbr)  # 1/16, "1/16" and "0.0625" alike
    if ref is not None:
        codec = load_jscc(resolve_weights(ref, zoo_dir), model=model, device=device)
        if cbr is not None and not _same_cbr(codec.cbr, cbr):
            raise ValueError(
                f"codec {str(ref)!r} has CBR {format_cbr(codec.cbr)}, but --cbr "
                f"{format_cbr(cbr)} was given (leave --cbr out or give its CBR)"
            )
        return codec
    e = find_checkpoint(model, cbr, channel, zoo_dir)
    return load_jscc(e.weights, model=model, c=channels_for_cbr(e.cbr), device=device)


def codec_snr_train(
    model: str,
    cbr: float | str,
    ref: str | Path | None = None,
    zoo_dir: str | Path | None = None,
) -> str:
    """The training SNR (``"10"`` or a range ``"-5:20"``) of the codec :func:`load_codec` loads
    for the same arguments, from its card (zoo card, or the run folder's ``card.json``)."""
    if ref is None:
        return find_checkpoint(model, cbr, zoo_dir=zoo_dir).snr_train
    card, c = read_card(ref, zoo_dir)
    snr = c.get("snr_train", (c.get("config") or {}).get("snr_train"))
    if snr is None:
        raise ValueError(f"codec {str(ref)!r}: its card {str(card)!r} has no training SNR")
    return str(snr)


def read_card(ref: str | Path, zoo_dir: str | Path | None = None) -> tuple[Path, dict]:
    """``(path, contents)`` of the card of a checkpoint reference (zoo name, run folder or
    ``.safetensors``): the zoo card, or the run's ``card.json``, as :func:`load_jscc` reads it.
    An unreadable card is a :class:`ValueError` naming it."""
    card = card_file(resolve_weights(ref, zoo_dir))
    try:
        return card, json.loads(card.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(ref)!r}: cannot read its card {str(card)!r}: {err}") from err


def trained_data(card: dict) -> str:
    """The training set named by a checkpoint card (zoo or run card), or ``"unknown"``."""
    data = card.get("data") or (card.get("config") or {}).get("data")
    name = _train_name(data) if data else None
    return name or "unknown"


def _train_name(data: object) -> str | None:
    """A card's ``data`` field (a name, or ``{"train": name, ...}``) -> the training set's
    name, or None when it names none."""
    if isinstance(data, dict):
        data = data.get("train")
    return str(data) if data else None


# ------------------------------------------------------------------------------- export
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
    test_data: str | None = None,
    test_limit: int | None = None,
    test_snrs: list[float] | None = None,
    device: str | torch.device = "cpu",
    zoo_dir: str | Path | None = None,
    batch_size: int = 64,
    replace: bool = False,
    allow_unfinished: bool = False,
) -> Path:
    """Copy a finished JSCC run (``model.safetensors`` + ``card.json``) into the zoo.

    With ``test_data`` (a named data set, e.g. ``cifar10-test`` or ``kodak``) the codec is
    first evaluated through :class:`~semcom.link.AnalogLink` on the training channel at
    ``test_snrs`` (default: the validation SNRs) and the PSNR goes into the card's
    ``test``. Returns the path of the written card. Files are written atomically.

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

        from ..data import collate_images, get_dataset
        from ..train.jscc import evaluate_codec

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


# ---------------------------------------------------------------------------------- CLI
def format_table(entries: list[ZooEntry]) -> str:
    """The ``semcom zoo list`` table (or a line saying nothing is shipped)."""
    from ..channels import format_cbr
    from ..eval.text import aligned

    if not entries:
        return "no checkpoints shipped yet (train with 'semcom train jscc', then 'semcom zoo add')"
    cols = [
        "name",
        "model",
        "cbr",
        "channel",
        "snr_train",
        "data",
        "test result",
        "hours",
        "hardware",
    ]
    variants = _variants(entries)
    rows = [
        [
            e.name + (" *" if e.name in variants else "") + (" +" if e.user else ""),
            e.model,
            format_cbr(e.cbr),
            e.channel,
            e.snr_train,
            e.data,
            e.summary(),
            f"{e.hours:.2f}",
            e.hardware,
        ]
        for e in entries
    ]
    lines = [aligned([cols, *rows])]
    if variants:
        lines.append("* a variant: not its CBR's default; run it with --codec NAME")
    users = sorted({str(e.weights.parent) for e in entries if e.user})
    if users:
        lines.append(f"+ yours: in {', '.join(users)} (${ZOO_ENV})")
    return "\n".join(lines)


def cmd_zoo_list(args: argparse.Namespace) -> int:
    """``semcom zoo list``: print the zoo's checkpoints, shipped and user (exit code 0)."""
    entries = list_checkpoints(getattr(args, "zoo_dir", None))
    if getattr(args, "json", False):
        print(json_text([e.card for e in entries], indent=2))
    else:
        print(format_table(entries))
        if entries and getattr(args, "verbose", False):
            for e in entries:
                print(f"{e.name}: {e.command}")
    return 0


# the latent models a run folder can hold: task -> (config key in the weights' metadata)
_LATENT_TASKS = {"denoiser": "denoiser_config", "snr-estimator": "estimator_config"}


def cmd_zoo_add(args: argparse.Namespace) -> int:
    """``semcom zoo add RUN NAME``: export a finished training run into the zoo."""
    run = Path(args.run)
    card_path = run / "card.json"
    if not card_path.is_file():
        raise FileNotFoundError(f"{str(card_path)!r} not found (is {str(run)!r} a training run?)")
    try:
        task = json.loads(card_path.read_text()).get("task")
    except json.JSONDecodeError as e:
        raise ValueError(f"corrupt run card {str(card_path)!r}: {e}") from e
    dest = Path(args.zoo_dir) if args.zoo_dir else default_zoo_dir()
    check_entry_name(dest, args.name)
    # one process at a time writes an entry (else one's card could land beside the other's
    # weights, and neither saw the other's entry to refuse it without --replace)
    what = f"zoo entry {args.name!r} in {str(dest)!r}"
    # the lock file creates the zoo folder: a refused add removes what it created (if empty)
    created = [d for d in (dest, *dest.parents) if not d.exists()]
    try:
        with OutputLock(dest / f"{args.name}.lock", what, hint="wait for it to end"):
            out = _zoo_add(args, run, task, dest)
    except BaseException:
        _remove_empty(created)
        raise
    print(f"{out}: {_entry(out).summary()}")
    if task == "jscc" and args.test_data is None:
        print(
            "semcom: note: not tested (its card holds no test result): add it again with "
            "--replace --test-data kodak (or cifar10-test) to test it",
            file=sys.stderr,
        )
    return 0


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; stop at the first that is not
    (another process may be writing there)."""
    for d in folders:
        try:
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return


def _zoo_add(args: argparse.Namespace, run: Path, task: object, dest: Path) -> Path:
    """The export of :func:`cmd_zoo_add` (its lock held); returns the entry's card."""
    flags = dict(zoo_dir=dest, replace=args.replace, allow_unfinished=args.allow_unfinished)
    if task == "jscc":
        out = export_to_zoo(
            run, args.name, test_data=args.test_data, test_limit=args.test_limit,
            test_snrs=args.test_snr, device=args.device, **flags,
        )  # fmt: skip
    elif task in _LATENT_TASKS:
        if args.test_data is not None:
            raise ValueError(
                f"--test-data tests JSCC codecs; a {task} card carries its validation metrics"
            )
        from ..diffusion.checkpoint import export_latent_model

        out = export_latent_model(run, args.name, task, _LATENT_TASKS[task], **flags)
    else:
        what = f"a {task!r} run" if task else "not a semcom run folder (its card names no task)"
        raise ValueError(f"{str(run)!r} is {what}; the zoo takes jscc, denoiser and "
                         "snr-estimator runs")  # fmt: skip
    return out


def add_zoo_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``zoo`` (``list``, ``add``) to a ``semcom`` subparsers object."""
    from ..names import dataset_name

    z = subparsers.add_parser("zoo", help="shipped checkpoints")
    zsub = z.add_subparsers(dest="zoo_command", required=True, metavar="{list,add}")
    zl = zsub.add_parser("list", help="list shipped checkpoints")
    zl.add_argument("--json", action="store_true", help="print the cards as JSON")
    zl.add_argument("-v", "--verbose", action="store_true", help="also print training commands")
    zl.add_argument("--zoo-dir", help=f"list this folder only (default: {ZOO_DIR} and ${ZOO_ENV})")
    zl.set_defaults(func=cmd_zoo_list)
    za = zsub.add_parser(
        "add",
        help="export a finished training run into the zoo",
        description="Copy a finished run (semcom train jscc|denoiser|snr-estimator --out RUN) "
        "into the zoo as NAME: weights + model card. JSCC codecs are tested with --test-data; "
        "a run started with --init from a zoo entry is chained after it in the card.",
    )
    za.add_argument("run", help="the run folder (holds card.json and model.safetensors)")
    za.add_argument("name", help="zoo name (letters, digits, - and _)")
    za.add_argument(
        "--test-data",
        type=dataset_name,
        help="JSCC: data set to test on, e.g. kodak, cifar10-test, or a folder of images",
    )
    za.add_argument("--test-limit", type=int, help="JSCC: test on the first N images only")
    za.add_argument("--test-snr", type=float, nargs="+", help="JSCC: test SNRs in dB "
                    "(default: the run's validation SNRs)")  # fmt: skip
    za.add_argument("--device", default="cpu", help="device for the test (default: cpu)")
    za.add_argument(
        "--zoo-dir",
        help=f"zoo folder (default: the first folder in ${ZOO_ENV}, else {ZOO_DIR})",
    )
    za.add_argument("--replace", action="store_true", help="overwrite an existing entry")
    za.add_argument("--allow-unfinished", action="store_true",
                    help="ship a run that stopped before the end of its schedule (the card "
                    "says so)")  # fmt: skip
    za.set_defaults(func=cmd_zoo_add)
    return z


__all__ = [
    "ZOO_DIR",
    "ZOO_ENV",
    "ZooEntry",
    "add_zoo_parser",
    "check_entry_name",
    "check_export",
    "codec_snr_train",
    "default_zoo_dir",
    "export_to_zoo",
    "find_checkpoint",
    "format_table",
    "list_checkpoints",
    "load_codec",
    "read_card",
    "run_provenance",
    "shipped_cbrs",
    "trained_data",
    "user_zoo_dirs",
    "val_when",
    "zoo_dirs",
]
