"""``semcom zoo list`` and ``semcom zoo add``: the zoo's table, and the parser and commands
that list the zoo and export a training run into it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..locking import OutputLock
from ..paths import json_text
from .catalog import (
    ZOO_DIR,
    ZOO_ENV,
    ZooEntry,
    _entry,
    _variants,
    default_zoo_dir,
    list_checkpoints,
)
from .export import check_entry_name, export_to_zoo


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


__all__ = ["add_zoo_parser", "cmd_zoo_add", "cmd_zoo_list", "format_table"]
