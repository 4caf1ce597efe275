"""Output files, checked before any work: a file semcom did not write (a photo, another
command's results) is never replaced by accident. What each file is (results JSON, bench JSON,
figure, semcom PNG by its Software chunk, demo table) and the command a results file records."""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..devices import command_args
from ..locking import OutputLock, lock_file
from .args import CLIError


def _output_file(path: str, option: str = "--out") -> Path:
    """``path`` checked before any work: not a folder, nor a device, pipe or socket (the
    file is replaced by a rename: ``/dev/null`` would become a regular file, and reading
    ``/dev/stdout`` to see what it holds waits for ever), its folder created and writable."""
    if not path:
        raise CLIError(f"{option} is empty: give a file name")
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{option} {path!r} is a folder: give a file name inside it")
    if p.exists() and not p.is_file():
        raise CLIError(
            f"{option} {path!r} is not a regular file (a device, pipe or socket): give a file name"
        )
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        why = "a part of it is a file" if isinstance(e, FileExistsError) else e.strerror
        raise CLIError(f"{option} {path!r}: cannot create its folder: {why}") from e
    if not os.access(p.parent, os.W_OK):
        raise CLIError(f"{option} {path!r}: its folder is not writable")
    return p


def _output_lock(path: str, option: str = "--out", rank: int = 0, world: int = 1) -> OutputLock:
    """The lock of output file ``path`` (checked by :func:`_output_file`; ``path.lock`` beside
    it), for a command to hold before it reads or writes the file: a second semcom process
    writing the same file is refused at once (:class:`~semcom.locking.OutputLock`; ``rank`` /
    ``world``: the ranks of one ``torchrun`` share it)."""
    out = _output_file(path, option)
    return OutputLock(lock_file(out), f"{option} {path!r}", rank=rank, world=world)


def _check_out_folder(out: Path) -> None:
    """``--out`` of transmit / demo: a folder for the images (refused when it is a file)."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} is a file: give a folder for the images")


def _json_of(path: Path) -> object:
    """``path``'s JSON, or None when it is not a readable JSON file."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _is_results(path: Path) -> bool:
    """A semcom results JSON (``eval``, ``merge`` or ``experiment``)."""
    doc = _json_of(path)
    return isinstance(doc, dict) and (
        isinstance(doc.get("runs"), list) or _command_of(doc) is not None
    )


def _is_bench(path: Path) -> bool:
    """A JSON file ``semcom bench --json PATH`` wrote (its rows, in a list before 2026-11-30)."""
    doc = _json_of(path)
    rows = doc.get("rows") if isinstance(doc, dict) and "settings" in doc else doc
    return isinstance(rows, list) and all(isinstance(r, dict) and "total" in r for r in rows)


def _png_software(path: Path) -> str:
    """The Software text chunk of image ``path`` ("" when none or not an image)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return str(im.info.get("Software", ""))
    except OSError:
        return ""


def _is_figure(path: Path) -> bool:
    """A PNG, PDF or SVG that matplotlib wrote (every semcom figure): the PNG's Software chunk,
    the PDF's own info (its trailer's, not that of a figure a paper includes) or the SVG's
    creator (at its head) name matplotlib."""
    if "matplotlib" in _png_software(path).lower():
        return True
    try:
        with path.open("rb") as f:
            head = f.read(2048)
            if head.startswith(b"%PDF-"):
                f.seek(max(path.stat().st_size - 4096, 0))
                return _pdf_producer(path, f.read()).startswith(b"Matplotlib")
    except OSError:
        return False
    creator = re.search(rb"<dc:creator>\s*<cc:Agent>\s*<dc:title>([^<]*)", head)
    return b"<svg" in head and creator is not None and creator[1].startswith(b"Matplotlib")


def _pdf_producer(path: Path, tail: bytes) -> bytes:
    """The ``/Producer`` of a PDF's info dictionary, found through the classic trailer in
    ``tail`` (its last bytes), as matplotlib writes it; b"" when there is none such."""
    ref = re.search(rb"trailer\s*<<[^>]*/Info (\d+) 0 R", tail)
    if ref is None:
        return b""
    with path.open("rb") as f:
        data = f.read(1 << 24)  # a figure is far smaller
    info = re.search(rb"(?:^|[\r\n])" + ref[1] + rb" 0 obj\s*<<(.*?)>>", data, re.S)
    producer = re.search(rb"/Producer \(([^)]*)\)", info[1]) if info else None
    return producer[1] if producer else b""


#: the PNG text chunk ``transmit`` / ``demo`` write into their images and grids, by which a
#: re-run recognises its own files (anything else in the folder is kept unless --force)
SOFTWARE_TAG = "semcom"


def _png_info():
    """PNG metadata marking an image as written by semcom (:data:`SOFTWARE_TAG`)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", f"{SOFTWARE_TAG} {__version__}")
    return info


def _is_ours_png(path: Path) -> bool:
    """A PNG that ``semcom transmit`` / ``demo`` wrote (its Software chunk)."""
    return _png_software(path).startswith(SOFTWARE_TAG + " ")


def _is_table(path: Path) -> bool:
    """A ``table.txt`` that ``semcom demo`` wrote (its header row)."""
    try:
        with open(path, encoding="utf-8") as f:
            head = f.readline().split()
    except (OSError, UnicodeDecodeError):
        return False
    return head[:4] == ["image", "scheme", "cbr", "snr_db"]


def _refuse_foreign(paths: Sequence[Path], ours, what: str) -> None:
    """``CLIError`` naming the existing ``paths`` that ``ours(path)`` does not claim (files
    this command would replace but did not write, e.g. a user's photo of the same name)."""
    foreign = [p for p in paths if p.exists() and not ours(p)]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise CLIError(
            f"{str(foreign[0])!r}{more} already exists and is not {what}: give another --out, "
            "or --force to replace it"
        )


def _replaceable(name: str, option: str, force: bool, ours, what: str) -> Path:
    """Output file ``name`` checked as by :func:`_output_file`, and refused when it exists
    and ``ours(path)`` says it is not ``what`` (e.g. an input photo given as ``--out``),
    unless ``force``."""
    path = _output_file(name, option)
    if path.exists() and not force and not ours(path):
        raise CLIError(
            f"{option} {str(path)!r} already exists and is not {what}: give another name, "
            "or --force to replace it"
        )
    return path


def _recorded_command(path: Path) -> str | None:
    """The command a semcom results JSON records (``meta.command`` of ``eval``, ``command``
    of the experiments); None when ``path`` is not such a file."""
    return _command_of(_json_of(path))


def _command_of(doc: object) -> str | None:
    """:func:`_recorded_command` of a document already read."""
    if not isinstance(doc, dict):
        return None
    meta = doc.get("meta")
    cmd = meta.get("command") if isinstance(meta, dict) else doc.get("command")
    return cmd if isinstance(cmd, str) else None


def _results_file(args: argparse.Namespace) -> Path:
    """``--out`` of a command that measures (``eval``, ``experiment perturb`` / ``ood``),
    checked before any work as :func:`_output_file`. An existing file is replaced only by a
    re-run of the command it records (reproducing it) or with ``--force``: the results of
    another command, maybe hours of measurements, are never overwritten by accident."""
    p = _output_file(args.out)
    if args.force or not p.exists():
        return p
    recorded = _recorded_command(p)
    if recorded is not None and _same_measurement(recorded, args):
        return p
    held = f"the results of `{recorded}`" if recorded else "a file that is not semcom's results"
    raise CLIError(
        f"--out {args.out!r} already holds {held}: give another --out, or --force to replace it"
    )


# options that do not change what a command measures: a re-run differing only in them is
# the recorded command again (the file it wrote is the one at hand, whatever --out says)
_PRESENTATION = frozenset(
    {"out", "force", "quiet", "verbose", "threads", "argv", "func", "summary"}
)


def _experiment_files(args: argparse.Namespace) -> Path:
    """``--out`` of ``semcom experiment`` checked as :func:`_results_file`, and the figure it
    writes next to it (``--out`` with ``.png``), refused when it exists and is not a figure
    (a photo of that name) unless ``--force``. Returns the figure's path."""
    if Path(args.out).suffix.lower() == ".png":
        raise CLIError(
            f"--out {args.out!r} names the results JSON, and its figure goes next to it as "
            "NAME.png: give a .json name"
        )
    _results_file(args)
    fig = str(Path(args.out).with_suffix(".png"))
    return _replaceable(fig, "the figure", args.force, _is_figure, "a figure")


def _same_measurement(recorded: str, args: argparse.Namespace) -> bool:
    """True when the command line ``recorded`` (a results file's) parses to the options of
    ``args`` but for :data:`_PRESENTATION` (order, spelling, ``--out``'s path, output noise)."""
    import contextlib
    import io

    from ..train.cli import parse_args
    from .parser import build_parser  # (which imports this module)

    words = command_args(recorded)
    if not words:
        return False
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            old = vars(parse_args(build_parser(), words))
    except SystemExit:  # no longer parses: not today's command
        return False
    new = vars(args)
    keys = ({*old} | {*new}) - _PRESENTATION
    return all(old.get(k) == new.get(k) for k in keys)
