"""The ``semcom`` command line.

Subcommands: ``transmit``, ``eval``, ``demo``, ``schemes``, ``datasets``, ``bench``,
``experiment``, ``merge``, ``table``, ``compare``, ``plot``, ``train``, ``zoo``. Errors a user can
fix (a corrupt image, a missing data folder, a bad option) print one line and exit 2.

Modules: :mod:`.args` (the parser, argument types, shared options, :class:`CLIError`),
:mod:`.build` (the channel, schemes, SNR grid and crop a command asks for), :mod:`.outputs`
(output-file checks: never replace a file semcom did not write), :mod:`.transmit` (``transmit``,
``demo``), :mod:`.sweep` (``eval``, ``bench``), :mod:`.results` (``reproduce``, ``merge``,
``table``, ``compare``, ``plot``), :mod:`.experiments` (``experiment perturb`` / ``ood``),
:mod:`.listing` (``schemes``, ``datasets``), :mod:`.parser` (:func:`build_parser`); here
:func:`main`.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..devices import launch_command
from ..paths import MissingResourceError
from .args import DATASET_HELP, EXIT_USAGE, NEGATIVE_VALUE, CLIError
from .experiments import cmd_experiment_ood, cmd_experiment_perturb
from .listing import cmd_datasets, cmd_schemes
from .outputs import SOFTWARE_TAG
from .parser import build_parser
from .results import cmd_compare, cmd_merge, cmd_plot, cmd_reproduce, cmd_table
from .sweep import RECEIVER_OPTIONS, cmd_bench, cmd_eval
from .transmit import DEMO_CBR, DEMO_SCHEMES, cmd_demo, cmd_transmit

__all__ = [
    "DATASET_HELP",
    "DEMO_CBR",
    "DEMO_SCHEMES",
    "EXIT_USAGE",
    "NEGATIVE_VALUE",
    "RECEIVER_OPTIONS",
    "SOFTWARE_TAG",
    "CLIError",
    "build_parser",
    "cmd_bench",
    "cmd_compare",
    "cmd_datasets",
    "cmd_demo",
    "cmd_eval",
    "cmd_experiment_ood",
    "cmd_experiment_perturb",
    "cmd_merge",
    "cmd_plot",
    "cmd_reproduce",
    "cmd_schemes",
    "cmd_table",
    "cmd_transmit",
    "main",
]


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"semcom: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``semcom`` command with ``argv`` (default ``sys.argv[1:]``); return the exit
    code (0 ok, 2 user error with a one-line message on stderr, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    from ..train.cli import parse_args

    args = None
    try:
        args = parse_args(parser, argv)
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    # (an unreadable image raises data.ImageReadError, a ValueError)
    except (CLIError, MissingResourceError, ValueError, OSError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"semcom: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except FloatingPointError as e:  # a training run that diverged: not a usage error
        print(f"semcom: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("RANK", "0") != "0":
            return 130  # every process of a torchrun gets the Ctrl-C: rank 0 says it once
        print(f"semcom: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130


def _resume_hint(args: argparse.Namespace | None) -> str:
    """What an interrupted ``semcom train`` continues with: the command resuming the folder
    that holds its last checkpoint (with the ``torchrun`` launcher and process count it ran
    with), or that there is none; empty for other commands."""
    if args is None or getattr(args, "command", None) != "train":
        return ""
    out, resume = getattr(args, "out", None), getattr(args, "resume", None)
    for run, more in ((out, []), (resume, ["--out", out] if out and out != resume else [])):
        if run and (Path(run) / "card.json").is_file():
            cmd = launch_command(["train", args.train_command, "--resume", run, *more])
            return f"; continue from the last checkpoint with {cmd!r} (later steps are redone)"
    return " before the first checkpoint: nothing to resume, start the run again"
