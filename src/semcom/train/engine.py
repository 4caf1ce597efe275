"""A small, generic, resumable training engine (single process or DDP via ``torchrun``).

A :class:`Task` says *what* to train (model, data, loss, validation); the :class:`Trainer`
does the rest the same way for every model in semcom (JSCC codecs, diffusion denoisers,
SNR estimators):

* global seed (python / numpy / torch); the data order of epoch ``e`` is a permutation
  seeded by ``(seed, e)`` (:class:`~semcom.train.loading.ResumableSampler`, a
  DistributedSampler that can start mid-epoch) and ``dataset.set_epoch(e)`` selects that
  epoch's random crops;
* per-step randomness for the loss (channel noise, SNR draws) comes from a
  ``torch.Generator`` seeded by ``(seed, rank, step)``, so resuming needs no hidden state;
* AdamW, per-iteration LR schedule (``cosine`` with linear warm-up, ``step`` or ``constant``);
* validation on a held-out set after every epoch, or every ``val_every`` epochs and after the
  last (rank 0), tqdm bar on rank 0;
* DataLoader workers (``num_workers`` > 0) persist across epochs: each index reaches them with
  its epoch and the pass's worker seed (they reseed their global RNGs with it), so the items
  are those of a loader started per epoch;
* one host sync per step: the loss and the logs of a task's ``loss`` are read in one transfer,
  which is also the check that the loss is finite (before ``backward``);
* checkpoints after every epoch (and every ``ckpt_every`` steps): ``model.safetensors``
  (weights + architecture metadata), ``state.pt`` (optimizer, scheduler, RNG states,
  epoch, step, position in the epoch; plain tensors/containers, loadable with
  ``weights_only=True``) and ``card.json`` (config, data, seed, git commit, hours,
  hardware, validation history), each written atomically (temporary file + ``os.replace``);
* ``resume``: continue a run exactly where its last checkpoint left it: a run stopped
  after epoch 1 and resumed reaches the same weights as an uninterrupted run;
* DDP: under ``torchrun --nproc_per_node=N`` (env ``WORLD_SIZE`` > 1) it initialises the
  process group (gloo on CPU, nccl on CUDA), shards the data with the sampler, syncs
  gradients, and only rank 0 validates and writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import numbers
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..devices import parse_device
from ..locking import OutputLock
from ..names import RESUME_FREE, SCHEDULES
from ..paths import atomic_write_files, json_bytes, json_text, safetensors_bytes
from .loading import ResumableSampler, _Loader

STATE_VERSION = 1


# ------------------------------------------------------------------------------ protocol
@runtime_checkable
class Task(Protocol):
    """What to train. Implementations: :class:`semcom.train.jscc.JSCCTask`.

    Attributes:
        name: short task name (``"jscc"``), stored in the card.
        config: a dataclass with the task's options (stored in the card as JSON).
    """

    name: str
    config: Any
    # optional ``progress: bool`` attribute: set from ``TrainConfig.progress`` before
    # ``build_model`` (progress bars while the task prepares its data)

    def build_model(self) -> nn.Module:
        """A freshly initialised model (called after seeding; same on every rank)."""
        ...

    def train_dataset(self) -> Dataset:
        """Training items; ``set_epoch(e)`` is called on it (or its base) when present, also in
        each DataLoader worker. An item drawing from a worker's global RNG (torch, random,
        numpy) gets the draws of a worker started for its epoch (the persistent workers are
        reseeded as torch seeds new ones), so a resume reproduces them; other state a
        worker's copy of the data set keeps does persist from one epoch to the next."""
        ...

    def val_dataset(self) -> Dataset | None:
        """Held-out validation items (None: no validation)."""
        ...

    def collate(self, items: list) -> Any:
        """Batch a list of items (default behaviour: ``torch.stack``)."""
        ...

    def loss(
        self, model: nn.Module, batch: Any, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float | Tensor]]:
        """Scalar loss of ``batch`` (call ``model(...)``, so DDP syncs) and logs to show: floats
        or one-element tensors (detached; the trainer reads them together with the loss, one
        host sync per step, where a ``float()`` each would wait for the device once each)."""
        ...

    def validate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """Validation metrics (floats) of the unwrapped model on the validation loader."""
        ...

    def model_metadata(self, model: nn.Module) -> dict[str, str]:
        """String metadata saved in ``model.safetensors`` (architecture description). Called
        once right after :meth:`build_model`, before the data are prepared (a model the task
        cannot describe fails at start), and again at each checkpoint."""
        ...

    def card(self) -> dict[str, Any]:
        """Extra JSON-able entries of the model card (e.g. ``model_config``, ``data``)."""
        ...


@dataclass
class TrainConfig:
    """Options of the :class:`Trainer` (stored in ``card.json`` under ``train``).

    Attributes:
        out: run folder (checkpoints, card).
        epochs: passes over the training data.
        batch_size: images per step *per process*.
        lr, weight_decay: AdamW settings.
        schedule: ``cosine`` (linear warm-up then cosine to ``min_lr_ratio * lr``),
            ``step`` (x ``gamma`` every ``step_size`` iterations, default a third of the run)
            or ``constant``; all per iteration.
        warmup_steps: linear warm-up iterations (cosine only).
        seed: global seed.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (DDP on CUDA uses ``cuda:LOCAL_RANK``).
        max_steps: stop after this many optimizer steps in total (the LR schedule still
            spans ``epochs``; use ``epochs`` to size a run).
        ckpt_every: also checkpoint every N steps (0: only at the end of each epoch).
        num_workers: DataLoader workers (kept across epochs: ``persistent_workers``).
        val_batch_size: batch size of validation.
        val_every: validate every N epochs (1: each); the last epoch, and an epoch that
            ``max_steps`` stops the run at the end of, are always validated (a stop mid-epoch is
            not: its checkpoint is a position in the epoch, which a resume finishes and
            validates as due). The card's ``history`` holds the validated epochs, its
            ``val_metrics`` the latest, with their ``val_epoch`` and ``val_step``.
        grad_clip: clip the gradient norm (0: off).
        progress: show a tqdm bar (rank 0 only).
        threads: ``torch.set_num_threads`` per process (0: leave unchanged; DDP on CPU
            sets 1 when 0).
    """

    out: str
    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    step_size: int = 0
    gamma: float = 0.1
    seed: int = 0
    device: str = "cpu"
    max_steps: int | None = None
    ckpt_every: int = 0
    num_workers: int = 0
    val_batch_size: int = 64
    val_every: int = 1
    grad_clip: float = 0.0
    progress: bool = True
    threads: int = 0
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}")
        for name in ("epochs", "batch_size", "val_every"):
            n = getattr(self, name)
            if n < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {n}")
        for flag, value, default, schedule, verb in (  # an option of a schedule not chosen
            ("warmup", self.warmup_steps, 0, "cosine", "warms up"),
            ("min-lr-ratio", self.min_lr_ratio, 0.0, "cosine", "sets"),
            ("step-size", self.step_size, 0, "step", "sets"),
            ("gamma", self.gamma, 0.1, "step", "sets"),
        ):
            if value != default and self.schedule != schedule:
                raise ValueError(
                    f"--{flag} {verb} the {schedule} schedule; --schedule {self.schedule} has none"
                )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}")
        for name in ("warmup_steps", "ckpt_every", "num_workers", "threads", "step_size"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name.replace('_', ' ')} must be >= 0, got {getattr(self, name)}"
                )
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ValueError(f"gradient clip must be >= 0 (0: off), got {self.grad_clip}")
        if not 0 <= self.min_lr_ratio <= 1:  # NaN too
            raise ValueError(f"min LR ratio must be within [0, 1], got {self.min_lr_ratio}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be within (0, 1], got {self.gamma}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max steps must be >= 1 (or none), got {self.max_steps}")
        if self.val_batch_size < 1:
            raise ValueError(f"validation batch size must be >= 1, got {self.val_batch_size}")


# ------------------------------------------------------------------------------- helpers
#: the file a run folder's training process holds locked (see ``Trainer._lock_out``)
LOCK_FILE = ".lock"
#: the files of a checkpoint, in the order :meth:`Trainer.save_checkpoint` renames them
CHECKPOINT_FILES = ("model.safetensors", "state.pt", "card.json")


def check_resume_config(cfg: TrainConfig, trained: dict[str, Any] | None, run: Path) -> None:
    """``ValueError`` naming each :class:`TrainConfig` field outside
    :data:`semcom.names.RESUME_FREE` that differs from ``trained`` (the ``train`` block of the
    checkpoint's card; None: not checked). A resume from Python with another ``batch_size``
    trained items of the epoch twice or not at all (the position in the epoch counts batches),
    with another ``lr`` ran the checkpoint's (the optimizer's state holds it) while the card
    recorded the new one."""
    if not isinstance(trained, dict):
        return
    now = json.loads(json_text(asdict(cfg)))  # as the card holds it
    diffs = [
        f"{k}: checkpoint {trained[k]!r}, now {v!r}"
        for k, v in now.items()
        if k not in RESUME_FREE and k in trained and trained[k] != v
    ]
    if diffs:
        raise ValueError(
            f"cannot resume from {str(run)!r}, TrainConfig differs: {'; '.join(diffs)}. Resume "
            "with the card's 'train' settings; only "
            f"{', '.join(sorted(RESUME_FREE & now.keys() - {'command', 'extra'}))} may change"
        )


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite (the run stops; its last checkpoint stays)."""


def git_commit() -> str:
    """``git rev-parse HEAD`` of the source tree, with ``-dirty`` when tracked files have
    uncommitted changes (the commit alone would not rebuild the run), or ``"unknown"``."""

    def git(*words: str) -> str | None:
        try:
            r = subprocess.run(
                ["git", *words],
                cwd=Path(__file__).resolve().parent,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if not head:
        return "unknown"
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def hardware(device: torch.device, world_size: int) -> str:
    """One line describing where training ran (GPU name or CPU, process count)."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    else:
        what = f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores, " + (
            f"{torch.get_num_threads()} threads/process)"
        )
    return f"{world_size} x {what}, torch {torch.__version__}"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the legacy global RNG)
    torch.manual_seed(seed)


def step_generator(seed: int, rank: int, step: int, device: torch.device) -> torch.Generator:
    """The generator of optimizer step ``step`` on ``rank`` (stateless, so resumable)."""
    ss = np.random.SeedSequence([int(seed), int(rank), int(step), 0x5EC0])
    g = torch.Generator(device=device)
    g.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> 1))
    return g


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state(legacy=True)  # noqa: NPY002 (the default, said for the types)
    assert isinstance(np_state, tuple)  # the global RNG is an MT19937: its legacy tuple
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = s["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _host_values(loss: Tensor, logs: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """``loss`` (one element) and the logs of a task's ``loss`` as Python floats: the tensors
    among them are read from the device in one transfer (a ``float()`` each would wait for
    the device once each). The values are those ``float()`` gives (float64 holds every
    float32/16 exactly); a log that is neither a tensor nor a real number (a text, None) is
    passed on as it is (the bar shows it with ``str``)."""
    keys = [k for k, v in logs.items() if isinstance(v, Tensor)]
    parts = [loss.detach().reshape(()), *(logs[k].detach().reshape(()) for k in keys)]
    values = torch.stack([t.to(loss.device, torch.float64) for t in parts]).tolist()
    read = dict(zip(keys, values[1:], strict=True))
    return values[0], {
        k: read[k] if k in read else float(v) if isinstance(v, numbers.Real) else v
        for k, v in logs.items()
    }


def _shown(value: Any) -> str:
    """A log as the progress bar shows it: a number to 4 significant digits, else ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def warn_if_validating_on_training_data(data: str, val_data: str, hold_out: bool) -> None:
    """Warn when the named validation set is the training set itself (``--val-data`` equal to
    ``--data``): its metrics then measure the fit to the training images, not generalisation.
    ``hold_out``: the task takes a held-out fraction (``--val-data 0.02``)."""
    from ..data import dataset_name

    if dataset_name(val_data) == dataset_name(data):
        import warnings

        warnings.warn(
            f"--val-data {val_data} is the training data: validation measures the fit to the "
            "training images, not generalisation ("
            + ("hold some out with --val-data 0.02, or " if hold_out else "")
            + "name another set)",
            stacklevel=2,
        )


def _duration(seconds: float) -> str:
    """``seconds`` as a short human duration (``45 s``, ``12 min``, ``3.4 h``)."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _same_metadata(a: str, b: str) -> bool:
    """Two checkpoint metadata values agree: equal strings, or JSON documents equal up to
    float rounding (relative 1e-6; e.g. a power measured on the training latents with
    another thread count, hence another summation order)."""
    if a == b:
        return True
    try:
        return _close(json.loads(a), json.loads(b))
    except ValueError:
        return False


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


def lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of the base LR at iteration ``step`` for ``cfg.schedule``."""
    total = max(1, total_steps)

    def cosine(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    def stepwise(step: int) -> float:
        size = cfg.step_size or max(1, total // 3)
        return cfg.gamma ** (step // size)

    return {"cosine": cosine, "step": stepwise, "constant": lambda step: 1.0}[cfg.schedule]


# ------------------------------------------------------------------------------ trainer
@dataclass
class _Progress:
    epoch: int = 0  # current epoch (0-based)
    step: int = 0  # optimizer steps done in total
    batch_in_epoch: int = 0  # batches of the current epoch already done
    hours: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def _file_step(path: Path, name: str) -> int | None:
    """The training step that ``path``, a checkpoint file ``name`` (``model.safetensors``,
    ``state.pt`` or ``card.json``, maybe under a temporary name), records; None if unreadable."""
    try:
        if name == "model.safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                return int((f.metadata() or {})["step"])
        if name == "state.pt":
            return int(torch.load(path, map_location="cpu", weights_only=True)["step"])
        return int(json.loads(path.read_text())["step"])
    except Exception:
        return None


def finish_torn_checkpoint(run: str | Path) -> list[str]:
    """Finish a checkpoint write cut between its renames (SIGKILL, power loss).

    :meth:`Trainer.save_checkpoint` writes and syncs all three files under temporary names and
    then renames them, ``model.safetensors`` first; killed between the renames, the run holds
    the new weights next to the old ``state.pt`` / ``card.json``, with the new ones complete as
    ``.state.pt.*.tmp`` / ``.card.json.*.tmp``. Those whose step is the weights' are renamed
    into place (the write completed); leftover temporary files of the three are removed.
    Returns the names completed (empty when the run was consistent)."""
    run = Path(run)
    first, *rest = CHECKPOINT_FILES  # the weights are renamed first
    step = _file_step(run / first, first)
    done: list[str] = []
    for name in rest:
        if step is None or _file_step(run / name, name) == step:
            continue
        for tmp in sorted(run.glob(f".{name}.*.tmp")):
            if _file_step(tmp, name) == step:
                os.replace(tmp, run / name)
                done.append(name)
                break
    for name in CHECKPOINT_FILES:
        for tmp in run.glob(f".{name}.*.tmp"):  # a write cut before its renames: never used
            tmp.unlink(missing_ok=True)
    return done


class Trainer:
    """Runs a :class:`Task` with a :class:`TrainConfig` (see the module docstring).

    ``Trainer(task, cfg).fit(resume=None)`` trains and returns the final validation
    metrics (rank 0; ``{}`` elsewhere). ``resume`` is a run folder with a checkpoint.
    """

    def __init__(self, task: Task, cfg: TrainConfig) -> None:
        self.task, self.cfg = task, cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        # one process trains alone whatever a stray RANK says; under torchrun a rank outside
        # the world would wait forever for a share of the data it never gets
        self.rank = int(os.environ.get("RANK", "0")) if self.world > 1 else 0
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.world > 1 else 0
        if not 0 <= self.rank < self.world:
            raise ValueError(
                f"RANK={self.rank} is outside WORLD_SIZE={self.world}: launch with torchrun "
                "(it sets both) or unset them"
            )
        self.device = parse_device(cfg.device)
        if self.device.type == "cuda":
            if self.world > 1 or self.device.index is None:
                # DDP: one GPU per process; plain "cuda": the first visible one (set_device
                # refuses a device without an index)
                self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        self.out = Path(cfg.out)
        # the card's command is the one that started the run; each --resume is added to
        # ``resumed_with`` (so a chained zoo command replays the run, not its last resume)
        self._command = cfg.command
        self._resumes: list[str] = []
        self._setup_hours = 0.0  # model and data built before training (card: setup_hours)
        self._lock: OutputLock | None = None  # held on OUT/.lock while training
        self._saved_step: int | None = None  # step of the last checkpoint in ``out``
        self._resumed: Path | None = None  # the run folder ``fit`` resumes
        self._loaders: list[_Loader] = []  # their workers are stopped when ``fit`` ends

    # -------------------------------------------------------------------------- ddp
    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0 (it writes checkpoints and shows progress)."""
        return self.rank == 0

    def _init_dist(self) -> bool:
        if self.world <= 1 or dist.is_initialized():
            return False
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        return True

    def _barrier(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.barrier()

    def _loader(self, ds: Dataset, **kw: Any) -> _Loader:
        """A DataLoader of ``ds`` with the task's collate and ``num_workers``, whose workers
        persist from one pass to the next (:class:`_Loader`; started once, not every epoch);
        on a GPU its batches come in page-locked memory (``pin_memory``), so that the copy to
        the device (:func:`_to_device`, ``non_blocking``) overlaps with the work queued there
        instead of holding up the loop (a copy from pageable memory waits for it)."""
        return _Loader(
            ds,
            num_workers=self.cfg.num_workers,
            collate_fn=self.task.collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.cfg.num_workers > 0,
            **kw,
        )

    # ---------------------------------------------------------------------- ckpt I/O
    def _model_bytes(self, model: nn.Module, progress: _Progress) -> bytes:
        meta = dict(self.task.model_metadata(model))
        meta.update({"step": str(progress.step), "epoch": str(progress.epoch)})
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        return safetensors_bytes(state, meta)

    def _card(self, progress: _Progress) -> dict[str, Any]:
        cfg = asdict(self.cfg)
        task_cfg = self.task.config
        if dataclasses.is_dataclass(task_cfg) and not isinstance(task_cfg, type):
            task_cfg = asdict(task_cfg)
        else:
            task_cfg = dict(task_cfg)
        last = progress.history[-1] if progress.history else {"metrics": {}}
        card: dict[str, Any] = {
            "format": "semcom-run-v1",
            "task": self.task.name,
            "config": task_cfg,
            "train": cfg,
            "seed": self.cfg.seed,
            "command": self._command,
            **({"resumed_with": self._resumes} if self._resumes else {}),
            "git_commit": self._git,
            "hardware": hardware(self.device, self.world),
            "world_size": self.world,
            "epoch": progress.epoch,
            "step": progress.step,
            "batch_in_epoch": progress.batch_in_epoch,
            "hours": round(progress.hours, 5),
            # building the model and the data (e.g. encoding latents) before training, every
            # start summed; not in ``hours``
            "setup_hours": round(self._setup_hours, 5),
            # the last validation: with --val-every (or a stop at an epoch end not validated)
            # it may be of an earlier epoch than the weights' (``epoch``)
            "val_metrics": last["metrics"],
            **({"val_epoch": last["epoch"], "val_step": last["step"]} if "epoch" in last else {}),
            "history": progress.history,
        }
        card.update(self.task.card())
        return card

    def save_checkpoint(
        self, model: nn.Module, opt: torch.optim.Optimizer, sched: Any, progress: _Progress
    ) -> None:
        """Write ``model.safetensors``, ``state.pt`` and ``card.json`` (rank 0, atomically)."""
        if not self.is_main:
            return
        import io

        buf = io.BytesIO()
        torch.save(
            {
                "version": STATE_VERSION,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": _rng_state(),
                "epoch": progress.epoch,
                "step": progress.step,
                "batch_in_epoch": progress.batch_in_epoch,
                "hours": progress.hours,
                "history": json.dumps(progress.history),
                "world_size": self.world,
            },
            buf,
        )
        # all three written and synced before any replaces the last checkpoint's; the card
        # (the "commit" record) renamed last
        data = (
            self._model_bytes(model, progress),
            buf.getvalue(),
            json_bytes(self._card(progress)),
        )
        try:
            atomic_write_files(
                {self.out / n: b for n, b in zip(CHECKPOINT_FILES, data, strict=True)}
            )
        except OSError as e:  # e.g. disk full: the last checkpoint is untouched (atomic write)
            if self._saved_step is not None:
                from ..devices import launch_command

                words = ["train", self.task.name, "--resume", str(self.out)]
                cmd = launch_command(words)
                kept = (
                    f"its checkpoint of step {self._saved_step} is kept: free space and "
                    f"continue with {cmd!r}"
                )
            elif self._resumed is not None:
                kept = f"the run it resumes, {str(self._resumed)!r}, is unchanged"
            else:
                kept = "no checkpoint was written yet"
            msg = (
                f"cannot write the checkpoint of step {progress.step} to {str(self.out)!r} "
                f"({e.strerror or e}); {kept}"
            )
            raise (OSError(e.errno, msg) if e.errno is not None else OSError(msg)) from e
        self._saved_step = progress.step

    def _load_checkpoint(
        self, run: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: Any
    ) -> _Progress:
        from safetensors import safe_open

        if self.is_main and run.resolve() == self.out.resolve():  # locked by this process
            finish_torn_checkpoint(run)
        self._barrier()  # the other processes read the files rank 0 completed
        wpath, spath = run / "model.safetensors", run / "state.pt"
        for p in (wpath, spath):
            if not p.is_file():
                raise FileNotFoundError(f"cannot resume: {str(p)!r} not found")
        try:
            state = torch.load(spath, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"cannot resume: corrupt {str(spath)!r}: {e}") from e
        try:
            with safe_open(str(wpath), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                weights = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise ValueError(f"cannot resume: corrupt {str(wpath)!r}: {e}") from e
        want = self.task.model_metadata(model)
        for k, v in want.items():
            if k in meta and not _same_metadata(meta[k], v):
                raise ValueError(
                    f"cannot resume from {str(run)!r}: checkpoint {k}={meta[k]!r} but this run "
                    f"has {k}={v!r}"
                )
        if meta.get("step") is not None and int(meta["step"]) != int(state["step"]):
            raise ValueError(
                f"cannot resume from {str(run)!r}: model.safetensors (step {meta['step']}) and "
                f"state.pt (step {state['step']}) are from different checkpoints"
            )
        if int(state.get("world_size", 1)) != self.world:
            raise ValueError(
                f"cannot resume from {str(run)!r}: it ran with {state.get('world_size')} "
                f"processes, this run has {self.world} (the data order would differ): resume it "
                + (
                    f"under torchrun --nproc_per_node={state.get('world_size')}"
                    if int(state.get("world_size", 1)) > 1
                    else "in one process, without torchrun"
                )
            )
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise ValueError(f"cannot resume from {str(run)!r}: weights do not match: {e}") from e
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        return _Progress(
            epoch=int(state["epoch"]),
            step=int(state["step"]),
            batch_in_epoch=int(state["batch_in_epoch"]),
            hours=float(state["hours"]),
            history=json.loads(state["history"]),
        )

    # --------------------------------------------------------------------------- fit
    def fit(self, resume: str | Path | None = None, stop_at_step: int | None = None) -> dict:
        """Train (or resume) and return the last validation metrics.

        ``stop_at_step`` ends the run early after that global step *as if killed* right
        after the checkpoint of that step (for tests of exact resumption).
        """
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"--out {str(self.out)!r} is a file: give a run folder")
        new_folder = not self.out.exists()
        created = self._init_dist()
        try:
            return self._fit(resume, stop_at_step)
        finally:
            while self._loaders:
                self._loaders.pop().close()
            if self._lock is not None:
                self._lock.release()  # removes OUT/.lock
                self._lock = None
            if created:
                dist.destroy_process_group()
            # a start refused before anything was written leaves no empty run folder behind
            if new_folder and self.is_main and self.out.is_dir() and not any(self.out.iterdir()):
                with contextlib.suppress(OSError):  # another process started there meanwhile
                    self.out.rmdir()

    def _lock_out(self) -> None:
        """Hold the lock of ``OUT`` (``OUT/.lock``, :class:`~semcom.locking.OutputLock`; rank 0
        takes it for every rank of a ``torchrun``) while training: a second process training
        into, or resuming, the same folder at the same time is refused instead of overwriting
        this run's checkpoints. Released when the process ends, however it ends."""
        what = f"the run folder {str(self.out)!r}"  # the lock makes the folder (rank 0)
        lock = OutputLock(self.out / LOCK_FILE, what, rank=self.rank, world=self.world)
        self._lock = lock.acquire()

    def _fit(self, resume: str | Path | None, stop_at_step: int | None) -> dict:
        cfg = self.cfg

        def refuse_a_run_there() -> None:
            held = [n for n in CHECKPOINT_FILES if (self.out / n).exists()]
            if held and (resume is None or Path(resume).resolve() != self.out.resolve()):
                # never train over a run (hours lost): it is continued with --resume, or kept
                raise ValueError(
                    f"{str(self.out)!r} already holds a run ({', '.join(held)}): continue it "
                    f"with --resume {self.out}, or give another --out"
                )

        self._lock_out()  # before anything in the folder is read
        refuse_a_run_there()
        if self.is_main:
            others = [p for p in self.out.iterdir() if p.name != LOCK_FILE]
            if resume is None and others:
                # the run writes only CHECKPOINT_FILES (refused above when present): the
                # folder's other files stay, but a run folder shared with them is easily mistaken
                print(
                    f"note: {self.out}/ also holds {len(others)} other file(s) (kept); the run "
                    f"writes {', '.join(CHECKPOINT_FILES)} beside them",
                    file=sys.stderr,
                    flush=True,
                )
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        elif self.world > 1 and self.device.type == "cpu":
            torch.set_num_threads(1)
        self._git = git_commit() if self.is_main else "unknown"
        seed_everything(cfg.seed)
        task = self.task
        if hasattr(task, "progress"):  # data preparation (e.g. encoding latents) shows bars too
            task.progress = cfg.progress and self.is_main
        if hasattr(task, "resume_from"):  # the checkpoint will hold every weight
            task.resume_from = None if resume is None else Path(resume)
        self._resumed = None if resume is None else Path(resume)
        t_setup = time.perf_counter()  # building the model and the data (e.g. encoding latents)
        model = task.build_model().to(self.device)
        task.model_metadata(model)  # a model the task cannot describe fails now, not when saved
        train_ds = task.train_dataset()
        val_ds = task.val_dataset()
        n_train = len(train_ds)  # type: ignore[arg-type]  # torch's Dataset declares no __len__
        sampler = ResumableSampler(n_train, self.world, self.rank, cfg.seed)
        steps_per_epoch = len(sampler) // cfg.batch_size
        if steps_per_epoch < 1:
            raise ValueError(
                f"batch size {cfg.batch_size} x {self.world} process(es) is larger than the "
                f"training set ({n_train} items)"
            )
        total_steps = steps_per_epoch * cfg.epochs
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total_steps))
        prog = _Progress()
        if resume is not None:
            prog = self._load_checkpoint(Path(resume), model, opt, sched)
            try:
                before = json.loads((Path(resume) / "card.json").read_text())
            except (OSError, json.JSONDecodeError):
                before = {}
            check_resume_config(cfg, before.get("train"), Path(resume))
            # a run started from Python records no command (""): it stays so
            self._command = before.get("command") or ""
            self._resumes = [*before.get("resumed_with", []), cfg.command]
            self._setup_hours = float(before.get("setup_hours", 0.0))
        if prog.batch_in_epoch >= steps_per_epoch:
            prog.epoch, prog.batch_in_epoch = prog.epoch + 1, 0

        def at_max_steps() -> bool:
            return cfg.max_steps is not None and prog.step >= cfg.max_steps

        if resume is not None and self.is_main and (prog.epoch >= cfg.epochs or at_max_steps()):
            print(
                f"nothing to train: {str(resume)!r} has finished {prog.epoch} of {cfg.epochs} "
                f"epochs, at step {prog.step}"
                + (f" of --max-steps {cfg.max_steps}" if at_max_steps() else "")
                + "; give a larger --epochs or --max-steps to continue it"
                + (
                    f" (nothing is written to --out {str(self.out)!r})"
                    if Path(resume).resolve() != self.out.resolve()
                    else ""
                ),
                file=sys.stderr,
                flush=True,
            )
        # the last step this invocation trains to (an earlier --max-steps stops it sooner)
        end_step = min(total_steps, cfg.max_steps or total_steps)
        if self.is_main and prog.epoch < cfg.epochs and not at_max_steps():
            print(
                f"training {task.name} in {str(self.out)!r}: step {prog.step} to {end_step} "
                f"({cfg.epochs} epoch{'s' * (cfg.epochs != 1)} of {steps_per_epoch} steps), a "
                "checkpoint after every "
                "epoch"
                + (f" and every {cfg.ckpt_every} steps" if cfg.ckpt_every else "")
                + (
                    f", validation every {cfg.val_every} epochs and after the last"
                    if cfg.val_every > 1 and val_ds is not None
                    else ""
                ),
                file=sys.stderr,
                flush=True,
            )
        if (
            prog.epoch < cfg.epochs
            and resume is not None
            and self.out.resolve() == Path(resume).resolve()
        ):
            self._saved_step = prog.step  # the checkpoint kept there if a write fails
        ddp = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            ddp = DistributedDataParallel(model, device_ids=ids)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        val_loader = None
        if val_ds is not None and self.is_main:
            val_loader = self._loader(val_ds, batch_size=cfg.val_batch_size)
            self._loaders.append(val_loader)
        # one loader for every epoch (its workers persist): each index reaches the worker that
        # reads it with its epoch (which selects the epoch's crops) and the pass's seed
        loader = self._loader(
            train_ds,
            batch_size=cfg.batch_size,
            sampler=sampler,
            drop_last=True,
        )
        self._loaders.append(loader)
        items = loader.items
        metrics: dict[str, float] = {}
        t_start = time.perf_counter()
        self._setup_hours += (t_start - t_setup) / 3600.0
        hours0 = prog.hours

        def elapsed() -> float:
            return hours0 + (time.perf_counter() - t_start) / 3600.0

        step0 = prog.step

        def time_left() -> str:
            """`` (~12 min left)``: this invocation's time per step so far (validation and
            checkpoints included) times the steps left; empty before the first step, at the end."""
            done, left = prog.step - step0, end_step - prog.step
            if done < 1 or left < 1:
                return ""
            return f" (~{_duration((time.perf_counter() - t_start) / done * left)} left)"

        def stop_now() -> bool:
            return at_max_steps() or (stop_at_step is not None and prog.step >= stop_at_step)

        while prog.epoch < cfg.epochs and not stop_now():
            epoch = prog.epoch
            items.set_epoch(epoch)  # in this process; workers learn it with each index
            sampler.set_epoch(epoch, start=prog.batch_in_epoch * cfg.batch_size)
            bar = None
            if cfg.progress and self.is_main:
                from tqdm import tqdm

                bar = tqdm(
                    total=steps_per_epoch,
                    initial=prog.batch_in_epoch,
                    desc=f"epoch {epoch + 1}/{cfg.epochs}{time_left()}",
                    dynamic_ncols=True,
                    leave=True,
                )
            ddp.train()
            for batch in loader:
                if prog.batch_in_epoch >= steps_per_epoch:
                    break
                batch = _to_device(batch, self.device)
                g = step_generator(cfg.seed, self.rank, prog.step, self.device)
                loss, logs = task.loss(ddp, batch, g)
                value, shown = _host_values(loss, logs)  # the step's one wait for the device
                if not math.isfinite(value):
                    raise TrainingDiverged(
                        f"training diverged: the loss is {value} at step {prog.step}; the "
                        f"last checkpoint in {str(self.out)!r} is kept (start again with a "
                        "lower --lr)"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                prog.step += 1
                prog.batch_in_epoch += 1
                if bar is not None:
                    bar.set_postfix({k: _shown(v) for k, v in shown.items()}, refresh=False)
                    bar.update(1)
                end_of_epoch = prog.batch_in_epoch >= steps_per_epoch
                if cfg.ckpt_every and prog.step % cfg.ckpt_every == 0 and not end_of_epoch:
                    prog.hours = elapsed()
                    self.save_checkpoint(model, opt, sched, prog)
                    self._barrier()
                if stop_now():
                    break
            if bar is not None:
                bar.close()
            if prog.batch_in_epoch >= steps_per_epoch:
                done = epoch + 1  # epochs done; the last one and a stop are always validated
                due = done % cfg.val_every == 0 or done == cfg.epochs or at_max_steps()
                if val_loader is not None and due:
                    model.eval()
                    with torch.no_grad():
                        metrics = {k: float(v) for k, v in task.validate(model, val_loader).items()}
                    model.train()
                    prog.history.append({"epoch": epoch + 1, "step": prog.step, "metrics": metrics})
                    if self.is_main:
                        text = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
                        print(
                            f"epoch {epoch + 1}/{cfg.epochs} step {prog.step}: {text}{time_left()}",
                            flush=True,
                        )
                prog.epoch, prog.batch_in_epoch = epoch + 1, 0
                prog.hours = elapsed()
                self.save_checkpoint(model, opt, sched, prog)
                self._barrier()
            elif stop_now():
                # stopped mid-epoch (max_steps): keep the position so --resume continues
                prog.hours = elapsed()
                if not (cfg.ckpt_every and prog.step % cfg.ckpt_every == 0):
                    self.save_checkpoint(model, opt, sched, prog)
                self._barrier()
                if self.is_main and at_max_steps():
                    print(
                        f"stopped at step {prog.step} (--max-steps {cfg.max_steps}) in epoch "
                        f"{prog.epoch + 1} of {cfg.epochs}, not validated; the checkpoint in "
                        f"{str(cfg.out)!r} continues with --resume (to the end of --epochs, or "
                        "to a larger --max-steps)",
                        file=sys.stderr,
                        flush=True,
                    )
        self.model = model
        return metrics


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


__all__ = [
    "SCHEDULES",
    "Task",
    "TrainConfig",
    "Trainer",
    "git_commit",
    "hardware",
    "lr_lambda",
    "seed_everything",
    "step_generator",
]
