"""SNR sweeps: every scheme, every image, every SNR, on the same channel realisations.

Each image ``i`` is sent once per scheme with its SNRs in batches of ``batch_size`` and a
generator seeded from ``(seed, i)`` (:func:`image_seed`): every scheme sees the same channel
draws for image ``i`` at each SNR, and an image's values, bit for bit, do not depend on the
other schemes or their order, on ``--limit``, the order of the images, resuming or sharding (a
separation baseline falls back to the whole data set's mean image, which ``semcom eval`` sets).
They do depend on the SNR grid and the batch size, which decide how the generator's numbers are
spread over the batch, and in the last float32 bits on the thread count (docs/results.md, "What
a result depends on"). With ``batch_size >= len(snrs)`` image ``i``'s row is
``scheme.transmit(x.expand(len(snrs), -1, -1, -1), channel, snrs, generator)`` with
``generator = torch.Generator().manual_seed(image_seed(seed, i))``, as ``semcom transmit`` with
the same seed sends the ``i``-th image it is given (whose separation baselines fall back to
mid-grey: it has no data set). Per-image metrics are appended to a partial file so an
interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..channels.cbr import format_cbr
from ..paths import json_text, nan_for_null

if TYPE_CHECKING:  # torch is imported where a sweep runs: merging reads results without it
    import torch

    from ..channels import CBRReport, Channel
    from ..link import Scheme

DEFAULT_METRICS = ("psnr", "ssim", "ms_ssim", "lpips")


def image_seed(seed: int, index: int) -> int:
    """Seed of the channel generator for image ``index`` of a sweep seeded ``seed``."""
    return (seed * 1_000_003 + index * 7919 + 17) % (2**63 - 1)


@dataclass(frozen=True)
class RunKey:
    """Identifies one curve: a scheme at a CBR (complex channel uses per real source value;
    None for a scheme with one CBR)."""

    scheme: str
    cbr: float | None

    @property
    def label(self) -> str:
        """The curve's name in results: ``scheme``, or ``scheme@CBR`` (``deepjscc@1/16``)."""
        return self.scheme if self.cbr is None else f"{self.scheme}@{format_cbr(self.cbr)}"


class PartialResults:
    """Append-only JSON-lines file of per-image results, for resuming sweeps.

    The first line is the sweep's ``header`` (its settings); an existing file with another
    header is refused (:class:`ValueError`), or started afresh with ``replace``. A last line
    cut by an interruption is skipped.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None, header: dict, replace: bool = False
    ) -> None:
        path = None if path is None else Path(path)
        self.path = path
        self.rows: dict[tuple[str, int], dict] = {}
        if path is None:
            return
        text = path.read_text() if path.exists() else ""
        lines = text.splitlines()
        try:
            old = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError as e:
            if not replace:
                raise ValueError(
                    f"{path} is not a semcom partial-results file ({e}); "
                    "delete it or choose another --out"
                ) from e
            old = None
        new = json.loads(json_text(header))
        if old is None or (replace and old != new):  # new, empty, or another sweep's: start
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json_text(header) + "\n")
            return
        if old != new:
            keys = ", ".join(sorted(k for k in {*old, *new} if old.get(k) != new.get(k)))
            raise ValueError(
                f"{path} belongs to a different sweep (settings differ: {keys}); "
                "delete it or choose another --out"
            )
        for line in lines[1:]:
            try:
                row = json.loads(line)
                key = (row["run"], row["image"])
                # a metric that could not be computed was written as null
                row = {k: nan_for_null(v) if isinstance(v, list) else v for k, v in row.items()}
            except (json.JSONDecodeError, KeyError, TypeError):  # cut by an interruption
                continue
            self.rows[key] = row
        if not text.endswith("\n"):  # end a cut line so the next row starts on its own
            with open(path, "a") as f:
                f.write("\n")

    def has(self, run: str, image: int, name: str | None = None) -> bool:
        """A row of ``run`` for image index ``image``; with ``name``, only when it is of that
        image (the file at index ``image`` when it was written: a data set that gained or lost
        a file since puts other images at the indices)."""
        row = self.rows.get((run, image))
        return row is not None and (name is None or row.get("name", name) == name)

    def add(self, row: dict) -> None:
        """Keep ``row`` (one image's results of one run, :func:`evaluate`) and append it to
        the file, flushed to disk."""
        self.rows[(row["run"], row["image"])] = row
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json_text(row) + "\n")
                f.flush()
                os.fsync(f.fileno())


def safe_metrics(
    reference: torch.Tensor, reconstruction: torch.Tensor, names: Sequence[str]
) -> dict[str, torch.Tensor]:
    """:func:`semcom.metrics.compute_metrics` ``{name: [B] float64}``, except that a metric
    that cannot be computed at this image size (LPIPS below ~32 px, SSIM below 11 px, ...)
    gives NaN and a warning instead of an error. Unknown metric names still raise
    :class:`ValueError`; missing weights still raise."""
    import torch

    from ..metrics import compute_metrics, get_metric

    for n in names:
        get_metric(n)  # unknown names raise ValueError before any work
    try:  # all at once (work shared between metrics), else one at a time to find the failing
        return compute_metrics(reference, reconstruction, list(names))
    except (RuntimeError, ValueError):
        pass
    out: dict[str, torch.Tensor] = {}
    for n in names:
        try:
            out.update(compute_metrics(reference, reconstruction, [n]))
        except (RuntimeError, ValueError) as e:
            h, w = reference.shape[-2:]
            msg = " ".join(str(e).split())
            warnings.warn(f"metric {n} not computed for a {h}x{w} image (NaN): {msg}", stacklevel=2)
            out[n] = torch.full((reference.shape[0],), float("nan"), dtype=torch.float64)
    return out


def _mean(values: Iterable[float]) -> float:
    v = list(values)
    return float(sum(v) / len(v)) if v else float("nan")


def _round6(v: float) -> float:
    """A per-image value to 6 significant digits (results files stay small; NaN stays)."""
    return float(f"{v:.6g}")


def scheme_weights(schemes: Sequence[tuple[RunKey, Scheme]]) -> dict[str, dict[str, str]]:
    """Run label -> the fingerprints of the networks that scheme runs (``Scheme.weights()``;
    schemes without networks, e.g. the separation baselines, are left out)."""
    return {k.label: sch.weights() for k, sch in schemes if hasattr(sch, "weights")}


def _count(row: dict, key: str, j: int) -> int:
    """The row's count ``key`` at its ``j``-th SNR (0 where it has none)."""
    values = row.get("counts", {}).get(key)
    return int(values[j]) if values and j < len(values) else 0


def summarize(
    rows: Sequence[dict],
    keys: Sequence[RunKey],
    snrs: Sequence[float],
    metrics: Sequence[str],
    weights: dict[str, dict[str, str]] | None = None,
) -> list[dict]:
    """Average per-image rows into one run dict per scheme/CBR (docs/results-format.md).

    Each run also keeps its ``per_image`` values: ``images`` (names, in image order) and per
    metric (and ``snr_error_db`` where the receiver estimated the SNR) one list per SNR of one
    value per image, for confidence intervals and paired comparisons (:mod:`.stats`), and, where
    the receiver reports them, ``counts``: what it clamped per SNR, summed over the images
    (:attr:`semcom.link.Transmission.counts`).

    ``weights``: run label -> the fingerprints of the networks it ran (``Scheme.weights()``),
    recorded in the run as ``weights``."""
    runs = []
    for key in keys:
        mine = sorted((r for r in rows if r["run"] == key.label), key=lambda r: r["image"])
        if not mine:
            continue
        # images of other sizes can spend other budgets (padding, side information over
        # fewer pixels): the run's CBR is then their mean
        cbrs = [r["cbr"] for r in mine]
        cbr = cbrs[0] if len(set(cbrs)) == 1 else _mean(cbrs)
        run: dict = {
            "scheme": key.scheme,
            "cbr": cbr,
            "cbr_str": format_cbr(cbr),
            "n_images": len(mine),
            "snr_db": [float(s) for s in snrs],  # a NumPy array's or a tensor's too
        }
        for m in metrics:
            run[m] = [_mean(r[m][j] for r in mine) for j in range(len(snrs))]
        run["seconds_per_image"] = [_mean(r["seconds"][j] for r in mine) for j in range(len(snrs))]
        if all("snr_error_db" in r for r in mine):  # the receiver estimated the SNR
            errs = [[r["snr_error_db"][j] for r in mine] for j in range(len(snrs))]
            run["snr_est_rmse_db"] = [math.sqrt(_mean(e * e for e in col)) for col in errs]
            run["snr_est_bias_db"] = [_mean(col) for col in errs]
        info_keys = sorted({k for r in mine for k in r.get("info", {})})
        if info_keys:
            run["info"] = {k: sum(r.get("info", {}).get(k, 0) for r in mine) for k in info_keys}
        count_keys = sorted({k for r in mine for k in r.get("counts", {})})
        if count_keys:  # per SNR, summed over the images (a row resumed from before: 0)
            run["counts"] = {
                k: [sum(_count(r, k, j) for r in mine) for j in range(len(snrs))]
                for k in count_keys
            }
        if weights and weights.get(key.label):
            run["weights"] = weights[key.label]
        per_image: dict = {"images": [r.get("name", str(r["image"])) for r in mine]}
        for m in [*metrics, *(["snr_error_db"] if "snr_est_rmse_db" in run else [])]:
            per_image[m] = [[_round6(r[m][j]) for r in mine] for j in range(len(snrs))]
        run["per_image"] = per_image
        runs.append(run)
    return runs


def _check_evaluate_args(schemes, images, snrs) -> None:
    """One ``TypeError`` naming the expected form for what :func:`evaluate` cannot iterate
    (a bare scheme, an image tensor, a scalar SNR), instead of an unpacking error later;
    ``ValueError`` for no SNR at all (no row could be written)."""
    import torch

    if isinstance(snrs, int | float) or (isinstance(snrs, torch.Tensor) and snrs.dim() == 0):
        raise TypeError(f"snrs must be a list of SNRs in dB, got the number {float(snrs)}")
    if len(snrs) == 0:
        raise ValueError("snrs is empty: give at least one SNR (dB)")
    seen = [float(s) for s in snrs]
    if len(set(seen)) != len(seen):  # a results file holds each SNR once (load_results)
        raise ValueError(f"snrs repeats an SNR: {seen}; give each SNR once")
    if isinstance(images, torch.Tensor):
        raise TypeError(
            "images must be (index, name, tensor) triples, e.g. "
            "[(i, f'img{i}', x) for i, x in enumerate(batch)], not one tensor"
        )
    indices = [item[0] for item in images]
    if len(set(indices)) != len(indices):  # one row per (run, index): the later would replace
        twice = sorted({i for i in indices if indices.count(i) > 1})
        raise ValueError(
            f"images repeat the index {twice[0]!r}: give each image an index of its own (it "
            "keys the image's row and seeds its channel draws), e.g. enumerate(...)"
        )
    for pair in schemes:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], RunKey)):
            raise TypeError(
                "schemes must be (RunKey, scheme) pairs, e.g. [(RunKey('vae', None), scheme)], "
                f"got {type(pair).__name__}"
            )


def evaluate(
    schemes: Sequence[tuple[RunKey, Scheme]],
    images: Sequence[tuple[int, str, torch.Tensor | None]] | Sequence,
    channel: Channel,
    snrs: Sequence[float],
    *,
    load: Callable[[int], torch.Tensor] | None = None,
    seed: int = 0,
    metrics: Sequence[str] = DEFAULT_METRICS,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    partial: str | os.PathLike[str] | None = None,
    header: dict | None = None,
    progress: bool = True,
    replace_partial: bool = False,
) -> list[dict]:
    """Send every image through every scheme at every SNR; return per-image rows.

    Args:
        schemes: ``(RunKey, scheme)`` pairs.
        images: ``(index, name, tensor_or_None)``, the tensor one image ``[3, H, W]`` in
            [0, 1]; ``load(index)`` loads lazily if None.
        channel: the channel (with its CSI mode).
        snrs: SNR grid, Es/N0 in dB.
        seed: base seed; image ``i`` uses :func:`image_seed` ``(seed, i)``.
        metrics: metric names from :mod:`semcom.metrics`.
        device: where the images are sent.
        batch_size: most SNRs sent in one batch.
        partial: JSON-lines file for resuming (None: no resume).
        header: identifies the sweep in the partial file; the SNRs, seed, batch size,
            metrics and device are added to it (where it does not name them), so that a file
            of a sweep with others is refused, not resumed.
        progress: a progress bar and resume notes on stderr.
        replace_partial: start ``partial`` afresh when it holds another sweep (else an error).

    Returns:
        One row per (image, run) of ``images`` and ``schemes`` (those resumed from
        ``partial`` included; its rows of other images or runs stay in the file, not here):
        ``run`` (label), ``image`` (index), ``name``, ``cbr`` (measured), one value per SNR
        of each metric and of ``seconds`` (wall seconds per image), summed ``info``
        counters, and where the scheme reports them ``snr_error_db`` (dB) and ``counts``
        (per SNR).
    """
    import torch
    from tqdm.auto import tqdm

    device = torch.device(device)
    _check_evaluate_args(schemes, images, snrs)
    snrs = [float(s) for s in snrs]  # e.g. np.arange(-10, 21, 5) or a tensor: numbers
    # what decides the rows' values: a partial file of another grid is not resumed (its rows
    # held other SNRs, read as these)
    settings = {"snr_db": snrs, "seed": seed, "batch_size": batch_size,
                "metrics": list(metrics), "device": device.type}  # fmt: skip
    store = PartialResults(partial, {**settings, **(header or {})}, replace=replace_partial)
    todo = [
        (idx, name, img, key, scheme)
        for idx, name, img in images
        for key, scheme in schemes
        if not store.has(key.label, idx, name)
    ]
    lazy = [idx for idx, _, img, _, _ in todo if img is None]
    if lazy and load is None:
        raise TypeError(
            f"image {lazy[0]!r} is given as None (loaded lazily): pass load=, a function of "
            "the image index returning its [3, H, W] tensor"
        )
    done = len(images) * len(schemes) - len(todo)
    moved = sum(store.has(key.label, idx) for idx, _, _, key, _ in todo)
    if moved and progress:  # their rows are replaced as they are computed again
        print(
            f"semcom: note: {partial}: {moved} (image, scheme) results of the interrupted run "
            "are of other images than the data set now holds at their index (files added or "
            "removed since): computed again",
            file=sys.stderr,
        )
    if done and progress:
        print(
            f"semcom: note: resuming {partial}: {done} of {done + len(todo)} (image, scheme) "
            "results kept from the interrupted run",
            file=sys.stderr,
        )
    bar = tqdm(
        total=len(todo),
        desc="eval",
        unit="img",
        disable=None if progress else True,  # None: shown only on a terminal
        file=sys.stderr,
    )
    cache: dict[int, torch.Tensor] = {}
    warm: set[str] = set()
    noted: set[str] = set()  # runs whose pilots were remarked on
    for idx, name, img, key, scheme in todo:
        if img is None:
            assert load is not None  # _check_evaluate_args
            if idx not in cache:
                cache.clear()
                cache[idx] = load(idx)
            img = cache[idx]
        x = img.to(device).unsqueeze(0)
        if key.label not in warm:  # one untimed call first: loading networks, first-call
            warm.add(key.label)  # set-up and caches are not charged to the first image
            snr0 = torch.tensor(snrs[:1], dtype=torch.float64, device=device)
            scheme.transmit(x, channel, snr0, torch.Generator(device=device).manual_seed(0))
        g = torch.Generator(device=device).manual_seed(image_seed(seed, idx))
        per_metric: dict[str, list[float]] = {m: [] for m in metrics}
        seconds: list[float] = []
        snr_err: list[float] = []
        info: dict[str, float] = {}
        counts: dict[str, list[int]] = {}  # what the receiver clamped, per SNR
        for start in range(0, len(snrs), batch_size):
            chunk = torch.tensor(snrs[start : start + batch_size], dtype=torch.float64)
            xb = x.expand(len(chunk), -1, -1, -1)
            t0 = time.perf_counter()
            tx = scheme.transmit(xb, channel, chunk.to(device), g)
            elapsed = (time.perf_counter() - t0) / len(chunk)
            note_pilots(key.label, tx.cbr, noted)
            vals = safe_metrics(xb.float(), tx.images.float(), metrics)
            for m in metrics:
                per_metric[m].extend(float(v) for v in vals[m].cpu())
            seconds.extend([elapsed] * len(chunk))
            if tx.snr_error_db is not None:
                snr_err.extend(float(v) for v in tx.snr_error_db.cpu())
            for k, v in tx.info.items():
                if isinstance(v, int | float):
                    info[k] = info.get(k, 0) + v
            for k, c in tx.counts.items():  # one image at len(chunk) SNRs: one value per SNR
                counts.setdefault(k, [0] * start).extend(int(n) for n in c)
        store.add(
            {
                "run": key.label,
                "image": idx,
                "name": name,
                "cbr": tx.cbr.cbr,
                **per_metric,
                "seconds": seconds,
                "info": info,
                **({"snr_error_db": snr_err} if len(snr_err) == len(snrs) else {}),
                **({"counts": counts} if counts else {}),
            }
        )
        bar.set_postfix_str(f"{key.label} {name}")
        bar.update(1)
    bar.close()
    wanted = {(key.label, idx) for idx, _, _ in images for key, _ in schemes}
    return [row for k, row in store.rows.items() if k in wanted]


def note_pilots(label: str, report: CBRReport, noted: set[str]) -> None:
    """Warn once per run (``label``, remembered in ``noted``) when its pilots take at least as
    many channel uses as its data (:meth:`CBRReport.pilot_note`)."""
    note = report.pilot_note()
    if note and label not in noted:
        noted.add(label)
        warnings.warn(f"{label}: {note}", stacklevel=2)


def results_document(
    runs: list[dict],
    dataset: str,
    n_images: int,
    channel: Channel,
    meta: dict,
    crop: int | None = None,
    spread: bool = False,
) -> dict:
    """The results JSON of docs/results-format.md (plus a ``meta`` block for reproducibility).

    ``crop`` (centre crop size, if the images were cropped) and ``spread`` (the images are
    spread evenly over the set, not its first ``n_images``) are recorded in the data set block,
    so :func:`merge_results` refuses to pair sweeps over other images.
    """
    import torch

    ds: dict = {"name": dataset, "n_images": n_images}
    if crop:
        ds["crop"] = crop
    if spread:
        ds["spread"] = True
    ch: dict[str, object] = {"name": channel.name, "csi": channel.csi}
    if channel.csi == "estimated":
        ch["pilots"] = channel.pilots
    if channel.model == "rayleigh-fast":
        ch["coherence"] = channel.coherence
    return {
        "semcom_version": __version__,
        "dataset": ds,
        "channel": ch,
        "runs": runs,
        "meta": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **meta,
        },
    }


def _noise_plans(doc: dict) -> set[tuple[tuple[float, ...], ...]]:
    """How a results document's sweeps drew their noise: per run, its SNRs in the batches they
    were sent in (``meta.batch_size``; one batch when unknown, e.g. a merged document whose
    sources did not record it; a merge of merges: its sources' sources)."""

    def leaves(meta: dict) -> list[dict]:
        return [m for src in meta.get("sources", []) for m in leaves(src)] or [meta]

    sizes = {src.get("batch_size") for src in leaves(doc.get("meta", {}))}
    size = sizes.pop() if len(sizes) == 1 else None
    plans = set()
    for run in doc.get("runs", []):
        snrs = tuple(float(s) for s in run.get("snr_db", []))
        step = size if isinstance(size, int) and size > 0 else max(len(snrs), 1)
        plans.add(tuple(snrs[i : i + step] for i in range(0, len(snrs), step)))
    return plans


def _describe_plan(plan: tuple[tuple[float, ...], ...]) -> str:
    return " | ".join(" ".join(f"{s:g}" for s in chunk) for chunk in plan) + " dB"


def _block(doc: dict, key: str) -> dict | None:
    """A results document's ``dataset`` or ``channel`` block as compared by :func:`merge_results`;
    files written before the data set block recorded ``spread`` have it in ``meta``."""
    block = doc.get(key)
    if key == "dataset" and isinstance(block, dict) and doc.get("meta", {}).get("spread"):
        block = {**block, "spread": True}
    return block


def check_mergeable(docs: Sequence[dict], names: Sequence[str]) -> str | None:
    """``ValueError`` naming the first results document whose data set, channel or seed differs
    from the first one's; else None when every run drew the same channel noise, or a listing of
    how each file's sweeps drew it (an image's SNRs are drawn batch by batch, so other ``--snr``
    lists or batch sizes give other draws: the images are shared, the draws are not)."""
    first = docs[0]
    for doc, name in zip(docs[1:], names[1:], strict=True):
        for key in ("dataset", "channel"):
            if (theirs := _block(doc, key)) != (ours := _block(first, key)):
                raise ValueError(f"{name}: {key} {theirs} differs from {ours}")
        s0, s1 = first.get("meta", {}).get("seed"), doc.get("meta", {}).get("seed")
        if s0 != s1:
            raise ValueError(f"{name}: seed {s1} differs from {s0}")
    plans = {n: _noise_plans(d) for d, n in zip(docs, names, strict=True)}
    if len(set().union(*plans.values())) <= 1:
        return None
    return (
        "; ".join(
            f"{n}: " + ", ".join(_describe_plan(p) for p in sorted(ps, key=str))
            for n, ps in plans.items()
        )
        + " (SNRs per batch)"
    )


def merge_results(docs: Sequence[dict], names: Sequence[str] | None = None) -> dict:
    """Merge results documents of separate ``semcom eval`` runs into one.

    The runs must share the data set, channel and seed (so every scheme saw the same images,
    and the same channel realisations where the sweeps also shared the ``--snr`` list and
    batch size: an image's SNRs are drawn in one batch; a warning says when they did not);
    ``ValueError`` names the first mismatch. Runs of the same scheme/CBR in a later document
    replace earlier ones (a warning says when they ran other networks). ``meta`` keeps each
    source's meta under ``sources``. Each document is checked as :func:`.plot.load_results`
    checks a file (:func:`.plot.check_results`), so a malformed run is not copied on.
    """
    from .plot import check_results

    if not docs:
        raise ValueError("nothing to merge")
    names = list(names) if names is not None else [f"#{i}" for i in range(len(docs))]
    for doc, name in zip(docs, names, strict=True):
        check_results(doc, name)
    first, differ = docs[0], check_mergeable(docs, names)
    if differ:
        warnings.warn(
            f"the merged sweeps drew their channel noise differently: {differ}. Curves from "
            "different lists are not paired; rerun with one --snr list and --batch-size to "
            "compare them on the same noise",
            stacklevel=2,
        )
    runs: dict[tuple, dict] = {}
    held: dict[tuple, str] = {}  # the file each run came from
    for doc, name in zip(docs, names, strict=True):
        for run in doc["runs"]:
            key = (run["scheme"], run.get("cbr"))
            old = runs.get(key, {}).get("weights")
            if old and run.get("weights") and old != run["weights"]:
                # e.g. another --denoiser, which the label does not name
                warnings.warn(
                    f"{name}: curve {run['scheme']!r} ran other networks ({run['weights']}) than "
                    f"the one it replaces ({old}); label one with an option or keep them apart",
                    stacklevel=2,
                )
            lost = [s for s in runs.get(key, {}).get("snr_db", []) if s not in run["snr_db"]]
            if lost:  # e.g. a second sweep meant to extend the SNR range: its points replace
                warnings.warn(
                    f"{name}: curve {run['scheme']!r} replaces the one of {held[key]}, whose "
                    f"{' '.join(f'{s:g}' for s in lost)} dB it does not hold: those points "
                    "are not in the merged file (runs are replaced whole, not joined)",
                    stacklevel=2,
                )
            runs[key], held[key] = run, name
    merged = {k: v for k, v in first.items() if k not in ("runs", "meta")}
    if "dataset" in first:  # spread recorded where a later merge looks
        merged["dataset"] = _block(first, "dataset")
    merged["runs"] = list(runs.values())
    merged["meta"] = {
        "seed": first.get("meta", {}).get("seed"),
        "sources": [{"file": n, **d.get("meta", {})} for d, n in zip(docs, names, strict=True)],
    }
    return merged
