"""The ``--device`` option, checked the same way by every command (eval, transmit, bench, train),
and the command line that reruns a process (with its ``torchrun`` launcher)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def launch_command(argv: Sequence[str]) -> str:
    """The command line that reruns this process's ``semcom`` command ``argv``: ``semcom ARGS``,
    or under ``torchrun`` (``WORLD_SIZE`` > 1) ``torchrun --nproc_per_node=N -m semcom.cli
    ARGS`` (with ``--nnodes`` when several nodes ran), so the recorded command keeps the number
    of processes, which sets the global batch and the data order."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    head = ["semcom"]
    if world > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        nodes = [f"--nnodes={world // local}"] if local != world else []
        head = ["torchrun", *nodes, f"--nproc_per_node={local}", "-m", "semcom.cli"]
    return shlex.join([*head, *argv])


def command_args(command: str) -> list[str] | None:
    """The ``semcom`` arguments of a recorded command line (:func:`launch_command`'s inverse):
    the words after ``semcom``, or after ``-m semcom.cli`` / ``-m semcom.train.cli`` of a
    ``torchrun`` or ``python`` launcher; None for anything else."""
    words = shlex.split(command)
    if words[:1] == ["semcom"]:
        return words[1:]
    for mod in ("semcom.cli", "semcom.train.cli", "semcom"):
        for i in range(len(words) - 1):
            if words[i : i + 2] == ["-m", mod]:
                return words[i + 2 :]
    return None


def without_options(
    words: Sequence[str], valued: Sequence[str], flags: Sequence[str] = ()
) -> list[str]:
    """Command-line ``words`` less the options ``valued`` with their value (``--out X`` and
    ``--out=X``) and the value-less ``flags`` (``--force``), e.g. to re-run a recorded
    command elsewhere."""
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w in valued:
            skip = True
        elif w not in flags and not w.startswith(tuple(f"{o}=" for o in valued)):
            out.append(w)
    return out


def parse_device(name: str) -> torch.device:
    """``name`` (``cpu``, ``cuda``, ``cuda:1``, ...) as a :class:`torch.device`.

    Raises :class:`ValueError` (reported as one line by the CLIs) for a misspelt name, or a
    device this machine does not have (CUDA, an index past the last GPU, mps, xpu, ...; ``meta``
    computes nothing), before any work is done.
    """
    import torch  # here: the commands that take no --device run without torch

    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"invalid --device {name!r}: {e}") from e
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return dev
    backend = torch.backends.mps if dev.type == "mps" else getattr(torch, dev.type, None)
    available = getattr(backend, "is_available", None)
    if dev.type == "meta" or available is None or not available():
        raise ValueError(f"--device {name}: no such device on this machine (use cpu or cuda)")
    return dev


__all__ = ["command_args", "launch_command", "parse_device", "without_options"]
