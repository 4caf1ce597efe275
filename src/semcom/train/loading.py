"""The training data's loading: the resumable sampler whose order is a function of ``(seed,
epoch)`` (:class:`ResumableSampler`) and the DataLoader whose persistent workers serve every
pass as workers started for it would (each index carries its epoch and the pass's worker
seed), used by :class:`~semcom.train.engine.Trainer`."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler, Subset

if TYPE_CHECKING:
    from torch.utils.data.dataloader import _BaseDataLoaderIter


def _set_epoch(ds: Dataset, epoch: int) -> None:
    """Call ``set_epoch`` on ``ds`` or on the data set under its Subset wrappers."""
    while True:
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
            return
        if isinstance(ds, Subset):
            ds = ds.dataset
            continue
        return


class _EpochKeys(Sampler[tuple[int | None, int | None, int]]):
    """``(epoch, pass_seed, index)`` for each index of ``sampler``, so that persistent
    DataLoader workers (their own copies of the data set, :class:`_EpochItems`) learn what a
    worker started for the pass would have known: the epoch (``sampler.epoch``, a
    :class:`ResumableSampler`'s; None for a sampler without one), which ``set_epoch`` in the
    main process does not reach them with, and the pass's worker base seed (``seed``, set by
    :class:`_Loader` for each pass its reused workers serve; None when the workers were started
    for the pass, seeded by torch)."""

    def __init__(self, sampler: Sampler[int]) -> None:
        self.sampler = sampler
        self.seed: int | None = None

    def __iter__(self) -> Iterator[tuple[int | None, int | None, int]]:
        epoch, seed = getattr(self.sampler, "epoch", None), self.seed
        return ((epoch, seed, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


def _seed_worker(base_seed: int) -> None:
    """Seed this DataLoader worker's global RNGs (python, torch, numpy) and its
    ``get_worker_info().seed`` as torch's ``_worker_loop`` seeds a worker it starts with
    ``base_seed`` (``base_seed + id``; numpy from ``_generate_state(base_seed, id)``). Nothing
    outside a worker."""
    from torch.utils.data._utils import worker

    info = worker.get_worker_info()
    if info is None:
        return
    seed = base_seed + info.id
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(worker._generate_state(base_seed, info.id))  # noqa: NPY002 (as torch does)
    worker._worker_info = worker.WorkerInfo(
        id=info.id, num_workers=info.num_workers, seed=seed, dataset=info.dataset
    )


class _EpochItems(Dataset):
    """Item ``(epoch, pass_seed, index)`` is item ``index`` of ``dataset`` in epoch ``epoch``,
    read in a worker seeded for the pass: the process that reads it (a DataLoader worker, with
    its own copy) calls :func:`_set_epoch` when the epoch is not the one its copy was last set
    to (None: never), and reseeds its global RNGs (:func:`_seed_worker`) when ``pass_seed`` is
    not the one it was last seeded with (None: the seed torch started it with). So an item
    drawing from the worker's global RNG (``torch.rand``, ``random``, ``np.random``: e.g.
    torchvision-style augmentation) is the one a worker started for the pass reads."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.epoch: int | None = None
        self.seed: int | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch`` of ``dataset`` (in this process)."""
        _set_epoch(self.dataset, epoch)
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int | None, int | None, int]) -> Any:
        epoch, seed, index = key
        if seed is not None and seed != self.seed:
            _seed_worker(seed)
            self.seed = seed
        if epoch is not None and epoch != self.epoch:
            self.set_epoch(epoch)
        return self.dataset[index]


class _Loader(DataLoader):
    """A DataLoader of ``dataset`` whose workers (``persistent_workers``) serve every pass over
    it as workers started for each pass would: it reads ``dataset`` through
    :class:`_EpochItems`, in the order of ``sampler`` (default: sequential) with each index's
    epoch and pass seed (:class:`_EpochKeys`).

    Each pass takes from torch's global RNG the one number a new DataLoader iterator takes
    (its workers' base seed), also when the persistent workers are reused: the global RNG
    (saved in ``state.pt``, and any randomness of a task's own that draws from it) runs as it
    did with workers started for every pass, and the reused workers are seeded with that
    number, as new ones were."""

    def __init__(self, dataset: Dataset, sampler: Sampler[int] | None = None, **kw: Any) -> None:
        keys = _EpochKeys(sampler if sampler is not None else SequentialSampler(dataset))  # type: ignore[arg-type]
        items = _EpochItems(dataset)
        super().__init__(items, sampler=keys, **kw)
        self.items, self._keys = items, keys

    def __iter__(self) -> _BaseDataLoaderIter:
        seed = None  # workers started for this pass: seeded by torch, with the number it draws
        if self.persistent_workers and self._iterator is not None:  # reused: draw it here
            g = self.generator
            seed = int(torch.empty((), dtype=torch.int64).random_(generator=g).item())
        self._keys.seed = seed
        return super().__iter__()

    def close(self) -> None:
        """Stop the persistent workers now (not when the loader is collected)."""
        it, self._iterator = self._iterator, None
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


class ResumableSampler(Sampler[int]):
    """DistributedSampler-style sampler whose order is a function of ``(seed, epoch)``.

    Each replica takes every ``num_replicas``-th index of the seeded permutation (padded by
    wrapping so all replicas get the same count); ``start`` skips the first ``start``
    indices of this replica's share (mid-epoch resume). Same seed, same order, whatever the
    number of workers.
    """

    def __init__(
        self,
        n: int,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if n < 1:
            raise ValueError("cannot sample from an empty data set")
        self.n, self.num_replicas, self.rank = n, num_replicas, rank
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start = 0, 0
        self.per_replica = math.ceil(n / num_replicas)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Order of epoch ``epoch``, resuming after its first ``start`` indices of this
        replica's share."""
        self.epoch, self.start = int(epoch), int(start)

    def indices(self) -> list[int]:
        """This replica's whole share of the current epoch (``start`` not applied)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_replica * self.num_replicas
        order = (order * math.ceil(total / self.n))[:total]
        return order[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return self.per_replica - self.start


__all__ = ["ResumableSampler"]
