"""Where semcom finds data sets and pretrained weights.

Resolution order for a file ``rel`` (e.g. ``"lpips/alexnet_lpips_v0.1.safetensors"``):

1. ``$SEMCOM_WEIGHTS/rel`` (or ``$SEMCOM_DATA/rel`` for data) when the variable is set;
2. the user cache ``$XDG_CACHE_HOME/semcom/{weights,data}/rel`` (``~/.cache/...``);
3. for weights with a registered download, fetch it into the cache (needs internet).

Anything missing raises :class:`MissingResourceError`, whose message names the variable
to set and the path that was tried.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DATA_VAR = "SEMCOM_DATA"
WEIGHTS_VAR = "SEMCOM_WEIGHTS"


class MissingResourceError(FileNotFoundError):
    """A data set or weight file could not be found (message says what to set)."""


def cache_dir(kind: str) -> Path:
    """Per-user cache folder for ``kind`` in {"weights", "data"}."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "semcom" / kind


def _root(var: str, kind: str) -> tuple[Path | None, Path]:
    env = os.environ.get(var)
    return (Path(env).expanduser() if env else None), cache_dir(kind)


def _first_existing(rel: str, *roots: Path | None) -> tuple[Path | None, list[str]]:
    """``root / rel`` for the first of ``roots`` (None skipped) where it exists, or None, and
    the paths tried before it."""
    tried: list[str] = []
    for root in roots:
        if root is None:
            continue
        p = root / rel
        if p.exists():
            return p, tried
        tried.append(str(p))
    return None, tried


def data_path(rel: str) -> Path:
    """Resolve a data folder/file ``rel`` under ``$SEMCOM_DATA`` (or the cache)."""
    env_root, cache = _root(DATA_VAR, "data")
    found, tried = _first_existing(rel, env_root, cache)
    if found is not None:
        return found
    hint = (
        f"set {DATA_VAR} to the folder that contains '{rel}'"
        if env_root is None
        else f"'{rel}' is not under {DATA_VAR}={env_root}"
    )
    raise MissingResourceError(f"data '{rel}' not found ({hint}; tried: {', '.join(tried)})")


def _temp_for(dest: Path) -> Path:
    """A fresh temporary name next to ``dest`` (same folder: the rename stays atomic)."""
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp")


def _usual_mode(path: Path) -> None:
    """Give ``path`` the usual mode, ``0o666`` less the umask (``tempfile.mkstemp`` and
    safetensors create 0600)."""
    mask = os.umask(0o022)  # read the umask (there is no getter)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


@contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path next to ``dest`` to write to; it replaces ``dest`` when the block ends
    without an error and is removed otherwise, so ``dest`` is never half-written and an old
    ``dest`` survives a failed write. The file gets the usual mode (``0o666`` less the umask),
    whoever created it. Missing parent folders are created."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_for(dest)
    try:
        yield tmp
        _usual_mode(tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def _signals_held(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM while the block runs and deliver them, as they would
    have been, when it ends. Only the main thread can change handlers; elsewhere, and for a
    signal whose handler was not set from Python, the block runs unprotected; an ignored
    signal stays ignored."""
    held: list[int] = []
    old: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for s in signums:
            if signal.getsignal(s) not in (None, signal.SIG_IGN):  # ignored: nothing to hold
                old[s] = signal.signal(s, lambda n, _frame: held.append(n))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for s in held:
            signal.raise_signal(s)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`), synced to disk first."""
    atomic_write_files({path: data})


def atomic_write_files(files: Mapping[str | os.PathLike[str], bytes]) -> None:
    """Write several files as one update: each is written and synced under a temporary name
    first, and only when all are on disk are they renamed into place, in the mapping's order.
    A failure while writing (disk full, an error, Ctrl-C) removes the temporary files and
    leaves every destination as it was. Ctrl-C and SIGTERM during the renames are held until
    they are done; a crash between them (SIGKILL, power loss) leaves the set split, with the
    files not yet renamed complete under their temporary names (which
    :func:`semcom.train.engine.finish_torn_checkpoint` completes a checkpoint from)."""
    items = [(Path(p), data) for p, data in files.items()]
    tmps: list[Path] = []
    try:
        for dest, data in items:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(_temp_for(dest))
            with open(tmps[-1], "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            _usual_mode(tmps[-1])
    except BaseException:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    # committed: from here on no temporary file is removed, whatever happens
    with _signals_held():
        for (dest, _), tmp in zip(items, tmps, strict=True):
            os.replace(tmp, dest)


def safetensors_bytes(tensors: Mapping[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    """``safetensors.torch.save`` with a canonical header (keys sorted, no spaces): the library
    writes its metadata in hash order, so identical weights gave files of different bytes
    (and SHA-256s in the cards). Same tensors and metadata -> same bytes. Tensors in another
    memory format (a channels-last network's weights) are written contiguous."""
    from safetensors.torch import save

    raw = save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + n]), sort_keys=True, separators=(",", ":"))
    text = header.encode()
    text += b" " * (-len(text) % 8)  # the format allows space padding; keeps data aligned
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


def json_safe(obj: object) -> object:
    """``obj`` with every NaN / +-inf float replaced by None (``null``), recursively through
    dicts, lists and tuples, so that it serialises as strict JSON (RFC 8259 has no NaN);
    :func:`nan_for_null` reads such lists back. A path (:class:`os.PathLike`, e.g. a run
    folder or a data set given from Python as a ``Path``) is written as its text."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def nan_for_null(values: list) -> list:
    """A list of numbers read from JSON with each ``null`` (a value :func:`json_safe` wrote for
    a metric that could not be computed) back as NaN."""
    return [math.nan if v is None else v for v in values]


def json_text(obj: object, indent: int | None = None) -> str:
    """``obj`` as strict JSON text (:func:`json_safe`: NaN / inf as ``null``), no newline.

    With ``indent``, objects and lists of containers are indented as ``json.dumps`` does, but
    a list of plain values (numbers, strings, ``null``) stays on one line: a results file's
    per-image values are a few lines, not one line per number."""
    safe = json_safe(obj)
    if indent is None:
        return json.dumps(safe, allow_nan=False)
    return _indented(safe, " " * indent, "")


def _key(k: object) -> str:
    """A dict key as ``json.dumps`` writes it (numbers, booleans and None become strings)."""
    return json.dumps(k if isinstance(k, str) else next(iter(json.loads(json.dumps({k: 0})))))


def _indented(obj: object, step: str, pad: str) -> str:
    inner = pad + step
    if isinstance(obj, dict) and obj:
        items = (f"{inner}{_key(k)}: {_indented(v, step, inner)}" for k, v in obj.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list) and any(isinstance(v, dict | list) for v in obj):
        items = (inner + _indented(v, step, inner) for v in obj)
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(obj, allow_nan=False)


def json_bytes(obj: object, indent: int = 2) -> bytes:
    """``obj`` as indented strict JSON text (:func:`json_text`) with a final newline, the form
    of every card and results file."""
    return (json_text(obj, indent) + "\n").encode()


def atomic_write_json(path: str | os.PathLike[str], obj: object, indent: int = 2) -> None:
    """Write ``obj`` as indented JSON (:func:`json_bytes`) atomically."""
    atomic_write_bytes(path, json_bytes(obj, indent))


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The weights file of a checkpoint reference: a run folder's ``model.safetensors``, a
    file as is (existence is not checked)."""
    p = Path(path)
    return p / "model.safetensors" if p.is_dir() else p


def card_file(path: str | os.PathLike[str]) -> Path:
    """The model card beside a checkpoint reference: a run's ``card.json``, or ``<name>.json``
    beside ``<name>.safetensors`` (a zoo entry); existence is not checked."""
    p = checkpoint_file(path)
    return p.with_name("card.json") if p.name == "model.safetensors" else p.with_suffix(".json")


# Downloads for users with internet: rel path -> function(dest) that writes the file.
_DOWNLOADS: dict[str, Callable[[Path], None]] = {}


def register_download(rel: str, fetch: Callable[[Path], None]) -> None:
    """Register how to fetch weight file ``rel`` into a given destination path."""
    _DOWNLOADS[rel] = fetch


def download_url(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` atomically (temporary file, then rename)."""
    with (
        atomic_path(dest) as tmp,
        urllib.request.urlopen(url, timeout=60) as r,
        open(tmp, "xb") as f,
    ):
        while chunk := r.read(1 << 20):
            f.write(chunk)


def weights_path(rel: str, download: bool = True) -> Path:
    """Resolve a weight file ``rel`` under ``$SEMCOM_WEIGHTS`` (or cache, or download)."""
    env_root, cache = _root(WEIGHTS_VAR, "weights")
    found, tried = _first_existing(rel, env_root, cache)
    if found is not None:
        return found
    fetch = _DOWNLOADS.get(rel)
    if download and fetch is not None:
        dest = cache / rel
        try:
            fetch(dest)
            return dest
        except Exception as e:  # network failures, HTTP errors
            raise MissingResourceError(
                f"weights '{rel}' not found and download failed ({e}); "
                f"set {WEIGHTS_VAR} to a folder containing '{rel}' (tried: {', '.join(tried)})"
            ) from e
    raise MissingResourceError(
        f"weights '{rel}' not found; set {WEIGHTS_VAR} to a folder containing '{rel}' "
        f"(tried: {', '.join(tried)})"
    )
