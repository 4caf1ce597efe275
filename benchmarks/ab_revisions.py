"""Wall time of one ``semcom`` command at two git revisions, alternated in one run (on demand,
not a test): the ratio of a speed change, measured on the same machine at the same time.

    python benchmarks/ab_revisions.py BASE [--against HEAD] [--repeats 2] -- eval --scheme \
        deepjscc --cbr 1/16 --dataset kodak --limit 2 --snr -10 0 10
    python benchmarks/ab_revisions.py HEAD --against . -- train jscc --data bsds500-train \
        --crop 128 --epochs 1 --batch-size 16 --threads 1 --max-steps 20

Each revision is checked out once into a temporary ``git worktree`` and imported from there
(``PYTHONPATH``), so the installed package is not touched; a revision that names a folder (``.``)
is that checkout as it is, uncommitted changes included. The command runs ``--repeats`` times
per revision, alternating, each with its own ``--out`` in a temporary folder (``--force
--quiet`` added; ``train``: ``--quiet``, a new run folder each time). Printed: every run's wall
and CPU seconds (user + system of the process and its children: on a shared machine the CPU
time moves less than the wall time), the best per revision and their ratios, for ``eval`` the
largest difference of every stored mean between the two revisions' files, and for ``train``
whether the two last runs' weights (``model.safetensors``) are the same bytes, else their largest
difference, and their validation metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def largest_differences(a: dict, b: dict) -> dict[str, float]:
    """Largest |difference| per metric between the runs of two eval results files."""
    out: dict[str, float] = {}
    for ra, rb in zip(a["runs"], b["runs"], strict=True):
        for m, va in ra.items():
            vb = rb.get(m)
            if isinstance(va, list) and va and all(isinstance(v, float) for v in va) and vb:
                if m not in ("seconds_per_image", "snr_db"):
                    d = max(abs(x - y) for x, y in zip(va, vb, strict=True))
                    out[m] = max(out.get(m, 0.0), d)
    return out


def cpu_seconds() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def compare_runs(a: Path, b: Path) -> list[str]:
    """Lines comparing two ``train`` run folders: the weights (same bytes, or the largest
    difference per tensor) and the last validation metrics."""
    from safetensors.torch import load_file

    wa, wb = (p / "model.safetensors" for p in (a, b))
    if wa.read_bytes() == wb.read_bytes():
        lines = ["  weights: the same bytes"]
    else:
        ta, tb = load_file(str(wa)), load_file(str(wb))
        if ta.keys() != tb.keys():
            return ["  weights: different tensors"]
        d = max(float((ta[k].double() - tb[k].double()).abs().max()) for k in ta)
        lines = [f"  weights: largest difference {d:.2e}"]
    ca, cb = (json.loads((p / "card.json").read_text()) for p in (a, b))
    for k, va in ca.get("val_metrics", {}).items():
        vb = cb.get("val_metrics", {}).get(k, float("nan"))
        lines.append(f"  {k}: {va:.6g} vs {vb:.6g}")
    return lines


def main() -> None:
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("usage: ab_revisions.py BASE [--against REV] [--repeats N] -- SEMCOM ARGS...")
    cut = argv.index("--")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", help="the revision to compare against (e.g. HEAD~3)")
    p.add_argument("--against", default="HEAD", help="the other revision (default: HEAD)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv[:cut])
    command = argv[cut + 1 :]
    with tempfile.TemporaryDirectory() as tmp:
        # A list, not a dict keyed by revision: BASE may equal --against (an A/A check).
        trees: list[tuple[str, Path]] = []
        added: list[Path] = []  # the worktrees checked out here (removed at the end)
        try:  # a bad second revision must not leave the first worktree registered
            for rev in (args.base, args.against):
                if Path(rev).is_dir():  # a checkout as it is (uncommitted changes included)
                    trees.append((rev, Path(rev).resolve()))
                    continue
                tree = Path(tmp) / f"tree-{len(trees)}"
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), rev],
                    check=True,
                )
                added.append(tree)
                trees.append((rev, tree))
            train = command[:1] == ["train"]
            times: list[list[float]] = [[] for _ in trees]
            cpus: list[list[float]] = [[] for _ in trees]
            outs: list[Path] = [Path() for _ in trees]
            for rep in range(args.repeats):
                for i, (rev, tree) in enumerate(trees):
                    # a run folder is never trained over: a new one per run
                    outs[i] = Path(tmp) / (f"run-{i}-{rep}" if train else f"out-{i}.json")
                    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
                    cmd = [sys.executable, "-m", "semcom.cli", *command, "--out", str(outs[i])]
                    cmd += ["--quiet"] if train else ["--force", "--quiet"]
                    t0, c0 = time.perf_counter(), cpu_seconds()
                    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
                    times[i].append(time.perf_counter() - t0)
                    cpus[i].append(cpu_seconds() - c0)
                    print(
                        f"run {rep + 1} {rev}: {times[i][-1]:.1f} s ({cpus[i][-1]:.1f} s CPU)",
                        flush=True,
                    )
            (ra, _), (rb, _) = trees
            ta, tb = times
            print(f"best: {ra} {min(ta):.1f} s, {rb} {min(tb):.1f} s: {min(ta) / min(tb):.2f}x")
            ca, cb = cpus
            print(f"best CPU: {ra} {min(ca):.1f} s, {rb} {min(cb):.1f} s: {min(ca) / min(cb):.2f}x")
            files = [Path(tmp) / f"out-{i}.json" for i in range(2)]
            if command[:1] == ["eval"] and all(f.is_file() for f in files):
                a, b = (json.loads(f.read_text()) for f in files)
                for m, d in largest_differences(a, b).items():
                    print(f"  largest difference of the {m} means: {d:.2e}")
            if train and all((o / "model.safetensors").is_file() for o in outs):
                print("\n".join(compare_runs(*outs)))
        finally:
            for tree in added:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )


if __name__ == "__main__":
    main()
