"""The zoo's catalogue: where entries live (the shipped folder, then ``$SEMCOM_ZOO``), their
cards (:class:`ZooEntry`), and finding and loading one by model, CBR or name
(:func:`find_checkpoint`, :func:`resolve_weights`, :func:`load_codec`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..paths import card_file

if TYPE_CHECKING:
    import torch

    from ..codecs.jscc import DeepJSCC

#: the shipped zoo's folder, inside the package (read it; to add zoos of your own set
#: ``SEMCOM_ZOO``: assigning ``semcom.zoo.ZOO_DIR`` changes nothing, the lookups read this one)
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


def _is_card(path: Path) -> bool:
    """Whether the ``*.json`` file ``path`` in a zoo folder is an entry's card: its weights
    (``.safetensors`` of the same name) are beside it, or it is an object that says it is one
    (``format`` :data:`CARD_FORMAT`) or names a ``model``. Another JSON file there (a results
    file, a config) is not read as a broken card, which made every zoo lookup fail."""
    if path.with_suffix(".safetensors").exists():
        return True
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):  # unreadable and without weights: not an entry
        return False
    return isinstance(card, dict) and (card.get("format") == CARD_FORMAT or "model" in card)


def list_checkpoints(zoo_dir: str | Path | None = None) -> list[ZooEntry]:
    """All zoo entries: those of each folder of :func:`zoo_dirs` sorted by model, CBR and
    name, the shipped ones first ([] when there are none). Raises ValueError when a name is
    in two folders (which one ``--codec NAME`` meant would depend on the order)."""
    out: list[ZooEntry] = []
    seen: dict[str, Path] = {}
    for d in zoo_dirs(zoo_dir):
        if not d.is_dir():
            continue
        entries = [_entry(p) for p in sorted(d.glob("*.json")) if _is_card(p)]
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


def listed_cbrs(codec: str, denoiser: bool = False) -> tuple[float, ...] | None:
    """The CBRs ``semcom schemes`` shows for JSCC codec ``codec`` (``denoiser``: for its
    ``+dm`` scheme): those of the zoo's checkpoints of it (:func:`shipped_cbrs`) or of its
    denoisers (:func:`shipped_denoiser_cbrs`); None for none or an unreadable card (reported
    when the scheme is used)."""
    try:
        return (shipped_denoiser_cbrs(codec) if denoiser else shipped_cbrs(codec)) or None
    except (ValueError, KeyError, TypeError):
        return None


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


__all__ = [
    "CARD_FORMAT",
    "ZOO_DIR",
    "ZOO_ENV",
    "ZooEntry",
    "codec_snr_train",
    "default_zoo_dir",
    "find_checkpoint",
    "find_dm_decoder",
    "init_ref",
    "list_checkpoints",
    "listed_cbrs",
    "load_codec",
    "read_card",
    "resolve_weights",
    "shipped_cbrs",
    "shipped_denoiser_cbrs",
    "trained_data",
    "user_zoo_dirs",
    "zoo_dirs",
    "zoo_ref",
]
