"""Image data sets: folders of files, named benchmark sets, deterministic crops and splits.

Items are ``float32`` tensors ``[3, H, W]`` in ``[0, 1]`` (see :mod:`semcom.data.io`);
class labels (CIFAR-10) are ignored.

Cropping (``crop=k`` or ``crop=(h, w)``):

* images smaller than the crop are first padded up to it, centred, by **reflection**
  (``replicate`` when the image is too small to reflect, i.e. pad >= size); pass
  ``pad_mode="replicate"`` or ``"constant"`` (zeros) to change that;
* ``random_crop=True`` takes a uniformly random window, ``False`` the centre window;
* ``flip=True`` adds a random horizontal flip (probability 1/2);
* the randomness of item ``i`` comes from its own generator seeded by
  ``(seed, epoch, i)`` (:class:`numpy.random.SeedSequence`), so an item is the same no matter
  which DataLoader worker loads it or in which order; call :meth:`set_epoch` each epoch to
  get fresh crops (before creating the DataLoader iterator; persistent workers keep the
  epoch they were started with).

Without a crop, items keep their own size: use ``batch_size=1`` or
``collate_fn=collate_images`` (which stacks equal sizes and otherwise raises a clear error).
"""

from __future__ import annotations

import numbers
import operator
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from semcom.data.io import PathLike, image_size, load_image
from semcom.names import NAMED_DATASETS as _NAMED
from semcom.names import dataset_name, list_datasets
from semcom.names import folder_of as _folder
from semcom.paths import data_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "SKIMAGE_SAMPLES",
    "ImageDataset",
    "ImageFolder",
    "RepeatedCrops",
    "SampleImages",
    "cache_images",
    "collate_images",
    "dataset_signature",
    "get_dataset",
    "image_sizes",
    "list_datasets",
    "load_images",
    "split_dataset",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pnm",
    ".gif",
)

# Natural photos bundled inside the scikit-image wheel (load without network).
SKIMAGE_SAMPLES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins")


def _crop_size(crop: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``crop`` (N or (H, W), positive integers) as ``(h, w)``; ``ValueError`` otherwise."""
    if crop is None:
        return None
    # int | Number: an int is a Number, spelled out for the type checker (a float or a bool
    # is refused below, a NumPy integer taken)
    sizes: tuple[Any, ...] = (crop, crop) if isinstance(crop, int | numbers.Number) else tuple(crop)
    if len(sizes) != 2 or not all(
        isinstance(c, numbers.Integral) and not isinstance(c, bool) and int(c) > 0 for c in sizes
    ):
        raise ValueError(f"crop must be a positive integer N or a pair (H, W), got {crop!r}")
    return int(sizes[0]), int(sizes[1])


def _pad_to(x: torch.Tensor, h: int, w: int, mode: str) -> torch.Tensor:
    """Pad ``[C, H, W]`` (centred) to at least ``h x w``."""
    H, W = x.shape[-2:]
    ph, pw = max(h - H, 0), max(w - W, 0)
    if ph == 0 and pw == 0:
        return x
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if mode == "reflect" and (max(pad[:2]) >= W or max(pad[2:]) >= H):
        mode = "replicate"
    if mode == "constant":
        return F.pad(x, pad, mode="constant", value=0.0)
    return F.pad(x[None], pad, mode=mode)[0]


def collate_images(batch: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack ``[3, H, W]`` items into ``[N, 3, H, W]``; clear error when sizes differ."""
    shapes = {tuple(b.shape) for b in batch}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot batch images of different sizes {sorted(shapes)}; "
            "use batch_size=1 or give the data set a crop (crop=k)"
        )
    return torch.stack(list(batch))


class ImageDataset(Dataset):
    """Base class: per-item reading plus deterministic padding / cropping / flipping.

    Items are float32 ``[3, H, W]`` in [0, 1] (``[3, h, w]`` with ``crop=(h, w)`` or ``crop=k``
    for ``k x k``; see the module docstring for padding and the per-item randomness, seeded by
    ``seed``). Subclasses implement ``__len__`` and ``_read(index) -> [3, H, W]``.
    """

    def __init__(
        self,
        *,
        crop: int | Sequence[int] | None = None,
        random_crop: bool = True,
        flip: bool = False,
        seed: int = 0,
        pad_mode: str = "reflect",
        name: str = "images",
    ) -> None:
        if pad_mode not in ("reflect", "replicate", "constant"):
            raise ValueError(f"pad_mode must be reflect, replicate or constant, got {pad_mode!r}")
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.crop = _crop_size(crop)
        self.random_crop = bool(random_crop)
        self.flip = bool(flip)
        self.seed = int(seed)
        self.pad_mode = pad_mode
        self.name = name
        self.epoch = 0
        self._cached: dict[int, torch.Tensor] = {}

    # -- to implement -------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def _read(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def cache(self, indices: Iterable[int] | None = None, progress: bool = False) -> ImageDataset:
        """Decode images once (``indices``, default all) and keep them in memory (float32:
        12 bytes per pixel, e.g. 0.74 GB for all of bsds500-train). Items are unchanged, bit
        for bit; reading a cached one no longer decodes a file. Call it before creating
        DataLoader workers (they then share the decoded images). Returns ``self``."""
        todo = sorted({self._index(i) for i in (range(len(self)) if indices is None else indices)})
        todo = [i for i in todo if i not in self._cached]
        rows: Iterable[int] = todo
        if progress and todo:
            from tqdm import tqdm

            rows = tqdm(todo, desc=f"decoding {self.name}", leave=False)
        for i in rows:
            self._cached[i] = self._read(i)
        return self

    @property
    def n_cached(self) -> int:
        """How many images :meth:`cache` holds."""
        return len(self._cached)

    def image(self, index: int) -> torch.Tensor:
        """The whole image of item ``index`` ``[3, H, W]`` (from the cache when it holds it;
        never the cached tensor itself)."""
        i = self._index(index)
        x = self._cached.get(i)
        return self._read(i) if x is None else x.clone()

    def image_size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of :meth:`image` ``(index)``, without decoding it where the data set can
        read the size alone (files: their headers)."""
        i = self._index(index)
        x = self._cached.get(i)
        return self._size(i) if x is None else (int(x.shape[-2]), int(x.shape[-1]))

    def _size(self, index: int) -> tuple[int, int]:
        h, w = self._read(index).shape[-2:]
        return int(h), int(w)

    def set_epoch(self, epoch: int) -> None:
        """Select the crops/flips of epoch ``epoch`` (items depend on (seed, epoch, index))."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The random generator of item ``index`` in the current epoch."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index]))

    def _index(self, index) -> int:
        i = operator.index(index)
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for {self.name} ({n} images)")
        return i

    def __getitem__(self, index) -> torch.Tensor:
        i = self._index(index)
        return self._item(i, i)

    def _item(self, i: int, key: int) -> torch.Tensor:
        """Image ``i`` (a valid index) transformed as item ``key`` (:meth:`transform`), always
        a tensor of its own. A cached image is transformed itself, not a copy of it: a crop
        copies only its window (copying the whole image first made cached reading 1.3-1.5x
        slower, ``benchmarks/data_loading.py``); an item that is still the cached tensor, or
        a view of it, is cloned."""
        x = self._cached.get(i)
        if x is None:
            return self.transform(self._read(i), key)
        out = self.transform(x, key)
        same = out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
        return out.clone() if same else out

    def transform(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Pad / crop / flip ``x`` as item ``index`` of the current epoch. ``x`` is not
        modified (it may be the cached image); the result may be ``x`` itself or a view of it
        (no crop and no flip, or a crop of the whole image)."""
        if self.crop is None and not self.flip:
            return x
        rng = self.rng(index)
        if self.crop is not None:
            h, w = self.crop
            x = _pad_to(x, h, w, self.pad_mode)
            H, W = x.shape[-2:]
            if self.random_crop:
                top = int(rng.integers(0, H - h + 1))
                left = int(rng.integers(0, W - w + 1))
            else:
                top, left = (H - h) // 2, (W - w) // 2
            x = x[:, top : top + h, left : left + w]
        if self.flip and rng.random() < 0.5:
            x = x.flip(-1)
        return x.contiguous()

    def __repr__(self) -> str:
        extra = f", crop={self.crop}, random_crop={self.random_crop}" if self.crop else ""
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}{extra})"


def _scan(root: Path, extensions: frozenset[str]) -> list[tuple[tuple[str, ...], Path]]:
    """All image files under ``root`` (recursive, hidden entries skipped, symbolic links
    followed but for one back to a folder above it: a loop) with sort keys."""
    found: list[tuple[tuple[str, ...], Path]] = []
    # (folder, its path under root, the (device, inode) of it and the folders above it)
    stack: list[tuple[str, tuple[str, ...], frozenset]] = [(os.fspath(root), (), frozenset())]
    while stack:
        folder, rel, above = stack.pop()
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in above:  # a link to a folder above: listed once
            continue
        above = above | {(st.st_dev, st.st_ino)}
        with os.scandir(folder) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    stack.append((e.path, (*rel, e.name), above))
                elif os.path.splitext(e.name)[1].lower() in extensions and e.is_file():
                    found.append(((*rel, e.name), Path(e.path)))
    found.sort(key=lambda t: t[0])
    return found


class ImageFolder(ImageDataset):
    """Images found (recursively, sorted) under one folder or several folders.

    ``root`` may be a folder or a sequence of folders (their listings are concatenated in
    the given order). ``.paths`` holds the files, ``.names`` their paths relative to their
    root (prefixed with the root's folder name when there are several roots). The listing is
    done once, at construction.
    """

    def __init__(
        self,
        root: PathLike | Sequence[PathLike],
        crop: int | Sequence[int] | None = None,
        random_crop: bool = True,
        *,
        flip: bool = False,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        seed: int = 0,
        pad_mode: str = "reflect",
        name: str | None = None,
    ) -> None:
        roots = [Path(root)] if isinstance(root, str | os.PathLike) else [Path(r) for r in root]
        if not roots:
            raise ValueError("ImageFolder needs at least one root folder")
        exts = frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
        paths: list[Path] = []
        names: list[str] = []
        for r in roots:
            if not r.is_dir():
                raise FileNotFoundError(f"image folder {os.fspath(r)!r} does not exist")
            for key, p in _scan(r, exts):
                paths.append(p)
                names.append("/".join((r.name, *key) if len(roots) > 1 else key))
        if not paths:
            where = ", ".join(repr(os.fspath(r)) for r in roots)
            raise ValueError(f"no image files ({', '.join(sorted(exts))}) found under {where}")
        super().__init__(
            crop=crop,
            random_crop=random_crop,
            flip=flip,
            seed=seed,
            pad_mode=pad_mode,
            name=name if name is not None else roots[0].name,
        )
        self.roots = roots
        self.paths = paths
        self.names = names

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, index: int) -> torch.Tensor:
        return load_image(self.paths[index])

    def _size(self, index: int) -> tuple[int, int]:
        return image_size(self.paths[index])


class SampleImages(ImageDataset):
    """Photos bundled with scikit-image (:data:`SKIMAGE_SAMPLES`), as RGB ``[3, H, W]``.

    Grayscale ones (camera, coins) are replicated to three channels. No data root needed.
    """

    def __init__(
        self,
        crop: int | Sequence[int] | None = None,
        random_crop: bool = True,
        *,
        names: Sequence[str] = SKIMAGE_SAMPLES,
        flip: bool = False,
        seed: int = 0,
        pad_mode: str = "reflect",
        name: str = "samples",
    ) -> None:
        super().__init__(
            crop=crop, random_crop=random_crop, flip=flip, seed=seed, pad_mode=pad_mode, name=name
        )
        self.names = list(names)
        self.paths: list[Path] = []

    def __len__(self) -> int:
        return len(self.names)

    def _read(self, index: int) -> torch.Tensor:
        import skimage.data

        a = np.asarray(getattr(skimage.data, self.names[index])())
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        a = a[..., :3]
        if a.dtype != np.uint8:
            raise TypeError(f"skimage sample {self.names[index]!r} is {a.dtype}, expected uint8")
        x = torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))
        return x.float() / 255.0


class RepeatedCrops(Dataset):
    """``repeats`` random crops/flips of every image of ``dataset`` per epoch.

    ``dataset`` is an :class:`ImageDataset` or a chain of :class:`~torch.utils.data.Subset`
    over one. Item ``i`` is image ``i % n`` (``n = len(dataset)``) drawn with its own
    randomness: repeat ``r = i // n`` of base item ``k`` is transformed as base item
    ``k + r * N`` (``N`` the base data set's size, :meth:`ImageDataset.transform`), so
    ``repeats=1`` gives exactly the items of ``dataset`` and every (image, repeat, epoch) has
    its own crop. A longer epoch for fast devices: fewer validations, checkpoints and
    DataLoader restarts per optimizer step.
    """

    def __init__(self, dataset: Dataset, repeats: int) -> None:
        if int(repeats) < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.base, self._indices = _image_base(dataset, "RepeatedCrops", through_repeats=False)
        self.dataset = dataset
        self.repeats = int(repeats)

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Select the crops/flips of epoch ``epoch`` (see :meth:`ImageDataset.set_epoch`)."""
        self.base.set_epoch(epoch)

    def __getitem__(self, index) -> torch.Tensor:
        i = operator.index(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range ({len(self)} items)")
        r, k = divmod(i, len(self.dataset))  # type: ignore[arg-type]
        if self._indices is not None:
            k = self._indices[k]
        return self.base._item(k, k + r * len(self.base))


def _image_base(
    ds: Dataset, who: str, through_repeats: bool = True
) -> tuple[ImageDataset, list[int] | None]:
    """The :class:`ImageDataset` under ``ds``'s :class:`~torch.utils.data.Subset` (and, with
    ``through_repeats``, :class:`RepeatedCrops`) wrappers and the image (base index) of each
    item of ``ds`` (None: all, in order)."""
    indices: list[int] | None = None
    while not isinstance(ds, ImageDataset):
        if isinstance(ds, RepeatedCrops) and through_repeats:
            n = len(ds.dataset)  # type: ignore[arg-type]
            indices = None if indices is None else [i % n for i in indices]
            ds = ds.dataset
        elif isinstance(ds, Subset):
            sub = [int(i) for i in ds.indices]
            indices = sub if indices is None else [sub[i] for i in indices]
            ds = ds.dataset
        else:
            raise TypeError(f"{who} needs an ImageDataset, got {type(ds).__name__}")
    return ds, indices


def image_sizes(ds: Dataset) -> list[tuple[int, int]]:
    """``(H, W)`` of the images ``ds`` draws from (an :class:`ImageDataset`, or
    :class:`~torch.utils.data.Subset` / :class:`RepeatedCrops` wrappers of one: one entry per
    image, in the order of :func:`_image_base`), read from the files' headers where it can
    (:meth:`ImageDataset.image_size`)."""
    base, indices = _image_base(ds, "image_sizes")
    return [base.image_size(i) for i in (range(len(base)) if indices is None else indices)]


def cache_images(ds: Dataset, progress: bool = False) -> int:
    """Decode the images that ``ds`` uses once and keep them in memory
    (:meth:`ImageDataset.cache`): ``ds`` is an :class:`ImageDataset`, possibly under
    :class:`~torch.utils.data.Subset` / :class:`RepeatedCrops` wrappers, of which only the
    images the wrappers select are decoded. Returns how many images were cached."""
    base, indices = _image_base(ds, "cache_images")
    base.cache(indices, progress=progress)
    return len(base) if indices is None else len(set(indices))


def dataset_signature(ds: Dataset) -> str:
    """12 hex digits naming what ``ds`` reads, for caches of values computed from it: an
    :class:`ImageFolder`'s file names and byte sizes, the :class:`SampleImages`' names (with
    scikit-image's version), else the item count. A copy of the data with a file added,
    removed or replaced by one of another size gets another signature."""
    import hashlib

    if isinstance(ds, ImageFolder):
        files = zip(ds.names, ds.paths, strict=True)
        text = "".join(f"{n}\t{p.stat().st_size}\n" for n, p in files)
    elif isinstance(ds, SampleImages):
        import skimage

        # skimage's stub (__init__.pyi) lists __version__ in __all__ but does not define it
        version = skimage.__version__  # type: ignore[attr-defined]
        text = f"skimage {version}\n" + "\n".join(ds.names)
    else:
        text = f"{type(ds).__name__} of {len(ds)}"  # type: ignore[arg-type]
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_tag(name: str) -> str:
    """``name`` (a :func:`dataset_name`) as part of a cache file's name: a folder's path with
    its separators replaced (its contents are told apart by :func:`dataset_signature`)."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", name).strip("_")[-80:] or "_"


def get_dataset(
    name: str | os.PathLike[str],
    crop: int | Sequence[int] | None = None,
    split: str | None = None,
    **kw,
) -> ImageFolder | SampleImages:
    """Open a named data set (see :func:`list_datasets`) under ``$SEMCOM_DATA``, or a folder
    of images of your own (``name`` a path; every image file under it, named by its path
    relative to it; a named data set wins over a folder of the same name).

    Items are float32 ``[3, H, W]`` in [0, 1], of their own sizes, or ``crop`` (``k`` or
    ``(h, w)``) crops. ``split`` is an alternative spelling: ``get_dataset("cifar10",
    split="test")`` is ``get_dataset("cifar10-test")``. Other keywords go to :class:`ImageFolder` /
    :class:`SampleImages` (``random_crop``, ``flip``, ``seed``, ``pad_mode``).
    Raises :class:`ValueError` for an unknown name and
    :class:`~semcom.paths.MissingResourceError` when the data are not found.
    """
    name = os.fspath(name)  # a folder given as a Path
    key = name.lower()
    if split is not None:
        key = f"{key}-{split.lower()}"
    if key not in _NAMED:
        folder = _folder(name) if split is None and name else None
        if folder is not None:
            return ImageFolder(folder, crop=crop, name=dataset_name(name), **kw)
        valid = ", ".join(_NAMED)
        raise ValueError(
            f"unknown data set {name!r}: neither a named one ({valid}) nor a folder of images"
        )
    rels, _ = _NAMED[key]
    if rels is None:
        return SampleImages(crop=crop, name=key, **kw)
    roots = [data_path(r) for r in rels]
    return ImageFolder(roots if len(roots) > 1 else roots[0], crop=crop, name=key, **kw)


def split_dataset(
    ds: Dataset,
    val_fraction: float | None = None,
    n_val: int | None = None,
    seed: int = 0,
) -> tuple[Subset, Subset]:
    """Deterministic held-out split ``(train, val)`` of ``ds``.

    Give ``val_fraction`` (in (0, 1), rounded, at least 1 item) or ``n_val`` (default
    ``val_fraction=0.1``). The permutation depends only on ``seed`` and ``len(ds)``; both
    subsets keep the original order. Subsets share ``ds``, so ``ds.set_epoch`` applies.
    """
    n = len(ds)  # type: ignore[arg-type]
    if val_fraction is not None and n_val is not None:
        raise ValueError("give val_fraction or n_val, not both")
    if n_val is None:
        frac = 0.1 if val_fraction is None else float(val_fraction)
        if not 0.0 < frac < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {frac}")
        n_val = max(1, round(frac * n))
    n_val = int(n_val)
    if not 0 <= n_val <= n:
        raise ValueError(f"n_val must be in [0, {n}], got {n_val}")
    if n_val == n and n > 0:
        raise ValueError(
            f"holding out {n_val} of {n} items leaves none to train on (a smaller fraction)"
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    val_idx = sorted(perm[:n_val].tolist())
    train_idx = sorted(perm[n_val:].tolist())
    return Subset(ds, train_idx), Subset(ds, val_idx)


def load_images(
    source: PathLike | Dataset | Iterable[PathLike],
    limit: int | None = None,
    loader: Callable[[PathLike], torch.Tensor] = load_image,
) -> list[torch.Tensor]:
    """Load a list of ``[3, H, W]`` tensors from a folder, a file, paths or a data set.

    ``limit`` keeps the first ``limit`` items (in the data set's sorted order).
    """
    if isinstance(source, str | os.PathLike):
        p = Path(source)
        if p.is_dir():
            source = ImageFolder(p)
        else:
            return [loader(p)][:limit]
    if isinstance(source, Dataset):
        n = len(source)  # type: ignore[arg-type]
        if limit is not None:
            n = min(n, limit)
        return [source[i] for i in range(n)]
    out: list[torch.Tensor] = []
    for path in source:
        if limit is not None and len(out) >= limit:
            break
        out.append(loader(path))
    return out
