"""Wall time of one ``semcom`` command at two git revisions, alternated in one run (on demand,
not a test): the ratio of a speed change, measured on the same machine at the same time.

    python benchmarks/ab_revisions.py BASE [--against HEAD] [--repeats 2] -- eval --scheme \
        deepjscc --cbr 1/16 --dataset kodak --limit 2 --snr -10 0 10

Each revision is checked out once into a temporary ``git worktree`` and imported from there
(``PYTHONPATH``), so the installed package is not touched; the command runs ``--repeats`` times
per revision, alternating, each with its own ``--out`` in a temporary folder (``--force
--quiet`` added). Printed: every run's wall seconds, the best per revision and their ratio, and
for ``eval`` the largest difference of every stored mean between the two revisions' files.
"""

from __future__ import annotations

import argparse
import json
import os
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
        try:  # a bad second revision must not leave the first worktree registered
            for rev in (args.base, args.against):
                tree = Path(tmp) / f"tree-{len(trees)}"
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), rev],
                    check=True,
                )
                trees.append((rev, tree))
            times: list[list[float]] = [[] for _ in trees]
            for rep in range(args.repeats):
                for i, (rev, tree) in enumerate(trees):
                    out = Path(tmp) / f"out-{i}.json"
                    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
                    cmd = [sys.executable, "-m", "semcom.cli", *command, "--out", str(out)]
                    cmd += ["--force", "--quiet"]
                    t0 = time.perf_counter()
                    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
                    times[i].append(time.perf_counter() - t0)
                    print(f"run {rep + 1} {rev}: {times[i][-1]:.1f} s", flush=True)
            (ra, _), (rb, _) = trees
            ta, tb = times
            print(f"best: {ra} {min(ta):.1f} s, {rb} {min(tb):.1f} s: {min(ta) / min(tb):.2f}x")
            files = [Path(tmp) / f"out-{i}.json" for i in range(2)]
            if command[:1] == ["eval"] and all(f.is_file() for f in files):
                a, b = (json.loads(f.read_text()) for f in files)
                for m, d in largest_differences(a, b).items():
                    print(f"  largest difference of the {m} means: {d:.2e}")
        finally:
            for _, tree in trees:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )


if __name__ == "__main__":
    main()
