"""One writer per output (semcom.locking): a second semcom process writing the same results
file, run folder or zoo entry is refused at once; the lock goes with its process; the ranks of
one torchrun share it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from semcom.cli import main
from semcom.locking import OutputBusyError, OutputLock, lock_file

fcntl = pytest.importorskip("fcntl")  # elsewhere (Windows) nothing is locked

_HOLDER = """
import sys, time
from semcom.locking import OutputLock
for path in sys.argv[1:]:
    OutputLock(path, "x").acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def hold():
    """``hold(*lock_files)``: another process holding those locks (as a semcom command
    writing their outputs does) until it is killed; returns its ``Popen``."""
    procs: list[subprocess.Popen] = []

    def start(*paths: Path) -> subprocess.Popen:
        args = [sys.executable, "-c", _HOLDER, *map(str, paths)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_writer_is_refused_until_the_first_process_ends(tmp_path, hold):
    """The refusal names the output and the holder's pid; after the holder is killed (no
    release: SIGKILL) the lock is free, and a released lock leaves no file behind."""
    out = tmp_path / "r.json"
    proc = hold(lock_file(out))
    with pytest.raises(OutputBusyError) as e:
        OutputLock(lock_file(out), f"--out {str(out)!r}").acquire()
    assert str(e.value) == (
        f"--out {str(out)!r} is being written by another semcom process (pid {proc.pid}) right "
        "now: wait for it to end, or give another --out"
    )
    proc.kill()
    proc.wait()
    assert lock_file(out).exists()  # left by the killed process: it locks nothing
    with OutputLock(lock_file(out), "--out") as lock:
        pid, host = lock_file(out).read_text().split()
        assert (int(pid), host) == (os.getpid(), socket.gethostname())
        with pytest.raises(OutputBusyError, match=f"pid {os.getpid()}"):  # one per process too
            OutputLock(lock_file(out), "--out").acquire()
    assert lock.path == lock_file(out) and not lock_file(out).exists()


def test_a_lock_file_removed_by_its_last_holder_is_not_locked(tmp_path, monkeypatch):
    """A process that opened the lock file just before its holder removed it (on release) and
    then got the lock holds a file no longer there: it must lock the one there now, else two
    processes would both hold "the" lock."""
    import semcom.locking as locking

    path = tmp_path / "r.json.lock"
    real_open, calls = os.open, []

    def stale_first(p, flags, mode=0o777):
        calls.append(p)
        if len(calls) == 1:  # the file as it was before its holder removed it
            fd = real_open(p, flags, mode)
            os.unlink(p)
            return fd
        return real_open(p, flags, mode)

    monkeypatch.setattr(locking.os, "open", stale_first)
    lock = OutputLock(path, "--out").acquire()
    monkeypatch.undo()
    assert len(calls) == 2 and path.exists()
    with pytest.raises(OutputBusyError):  # the lock taken is the one on the file there
        OutputLock(path, "--out").acquire()
    lock.release()


def test_without_fcntl_nothing_is_locked(tmp_path, monkeypatch):
    """Where ``fcntl`` is missing (Windows) a command runs unlocked: no error, no file."""
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl -> ImportError
    path = tmp_path / "r.json.lock"
    with OutputLock(path, "--out"), OutputLock(path, "--out"):
        assert not path.exists()


def test_a_file_system_without_locks_leaves_no_lock_file(tmp_path, monkeypatch):
    """flock refused by the file system (ENOLCK: some network mounts): the command runs
    unlocked and leaves no empty lock file behind (in a new run folder it kept the trainer
    from removing the empty folder of a refused start)."""
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "no locks")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    path = tmp_path / "r.json.lock"
    with OutputLock(path, "--out"):
        assert not path.exists()
    assert not path.exists()


def test_a_lock_file_that_cannot_be_made_is_that_error(tmp_path):
    """A lock path where no file can be created although its folder exists (a dangling link,
    /proc): the error of the open itself, not a retry loop ending in 'it keeps being
    removed'."""
    path = tmp_path / "r.json.lock"
    path.symlink_to(tmp_path / "missing" / "x")
    with pytest.raises(FileNotFoundError):
        OutputLock(path, "--out").acquire()


def test_rank0s_error_while_locking_reaches_the_other_ranks(tmp_path, monkeypatch):
    """Under torchrun an error of rank 0 while locking (here its folder is a file) is still
    broadcast, so the other ranks stop too instead of waiting forever in the broadcast;
    rank 0 raises its own error, another rank a refusal naming it."""
    import semcom.locking as locking

    heard = []
    monkeypatch.setattr(locking, "_from_rank0", lambda r: heard.append(r) or r)
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="File exists"):  # its folder cannot be made
        OutputLock(tmp_path / "file" / ".lock", "the run folder 'x'", rank=0, world=2).acquire()
    assert len(heard) == 1 and "rank 0 could not take its lock" in heard[0]
    monkeypatch.setattr(locking, "_from_rank0", lambda r: heard[0])
    with pytest.raises(OutputBusyError, match="rank 0 could not take its lock"):
        OutputLock(tmp_path / "file" / ".lock", "the run folder 'x'", rank=1, world=2).acquire()


def test_ranks_of_one_run_do_not_lock_each_other_out(tmp_path):
    """Under torchrun only rank 0 takes the lock: the other ranks of the same run (same
    output) go on, and touch no file."""
    path = tmp_path / "r.json.lock"
    with OutputLock(path, "--out", rank=0, world=2):
        with OutputLock(path, "--out", rank=1, world=2) as other:
            assert other._fd is None
        assert path.exists()  # rank 1's release left rank 0's lock alone
        with pytest.raises(OutputBusyError):
            OutputLock(path, "--out", rank=0, world=1).acquire()


_RANK = """
import os, sys
import torch.distributed as dist
from semcom.locking import OutputBusyError, OutputLock
dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=2)
rank = dist.get_rank()
with OutputLock(sys.argv[1], "--out", rank=rank, world=2):  # free: every rank goes on
    dist.barrier()
    print(rank, "ran", flush=True)
try:
    OutputLock(sys.argv[2], "--out 'busy'", rank=rank, world=2).acquire()
except OutputBusyError as e:  # held by another run: rank 0 says so to every rank
    print(rank, "refused", str(e)[:40], flush=True)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_torchrun_ranks_share_the_lock_and_its_refusal(tmp_path, hold):
    """Two gloo ranks: a free output is locked once for both; one held by another process
    refuses both ranks (rank 1 does not go on to write its shard's partial file)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    busy = tmp_path / "busy.json.lock"
    holder = hold(busy)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    args = [sys.executable, "-c", _RANK, str(tmp_path / "free.json.lock"), str(busy)]
    procs = [
        subprocess.Popen(args, env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, text=True)
        for r in (0, 1)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    for r, out in enumerate(outs):
        msg = f"--out 'busy' is being written by another semcom process (pid {holder.pid})"
        assert out.splitlines() == [f"{r} ran", f"{r} refused {msg[:40]}"]


def _run_err(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_eval_refuses_an_out_another_process_writes_and_leaves_its_files(
    tmp_path, capsys, monkeypatch, hold
):
    """Two ``semcom eval --out F`` at once shared F.partial.jsonl: rows of both were appended
    to it, and when the first ended (removing it) the second went on appending to a new one
    without a header, which every later run of the command refused as "a different sweep".
    Now the second is refused at once, before reading or writing anything; once the first
    process is gone, the same command runs."""
    from semcom.eval import sweep

    out = tmp_path / "F.json"
    partial = tmp_path / "F.json.partial.jsonl"
    partial.write_text('{"first": "run header"}\n{"run": "a", "image": 0}\n')
    proc = hold(lock_file(out))
    argv = ["eval", "--scheme", "jpeg+capacity", "--cbr", "1/2", "--dataset", "samples",
            "--crop", "16", "--limit", "1", "--snr", "10", "--metrics", "psnr", "--quiet",
            "--out", str(out)]  # fmt: skip
    real = sweep.evaluate
    monkeypatch.setattr(sweep, "evaluate", lambda *a, **k: pytest.fail("ran beside the other"))
    line = _run_err(capsys, argv)
    assert line == (
        f"semcom: error: --out {str(out)!r} is being written by another semcom process "
        f"(pid {proc.pid}) right now: wait for it to end, or give another --out"
    )
    assert partial.read_text() == '{"first": "run header"}\n{"run": "a", "image": 0}\n'
    assert not out.exists() and lock_file(out).exists()  # the holder's, kept
    proc.kill()
    proc.wait()
    monkeypatch.setattr(sweep, "evaluate", real)
    assert main([*argv, "--force"]) == 0  # (--force: the partial file is of another sweep)
    assert json.loads(out.read_text())["runs"][0]["n_images"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["F.json"]  # no lock, no partial


def _fake_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "card.json").write_text(json.dumps({"task": "jscc"}))
    return run


@pytest.mark.parametrize(
    ("argv", "output", "lock"),
    [
        (["bench", "--scheme", "jpeg+capacity", "--limit", "1", "--json", "{d}/b.json"],
         "--json '{d}/b.json'", "b.json.lock"),
        (["experiment", "perturb", "--limit", "1", "--out", "{d}/p.json"],
         "--out '{d}/p.json'", "p.json.lock"),
        (["experiment", "ood", "--limit", "1", "--out", "{d}/o.json"],
         "--out '{d}/o.json'", "o.json.lock"),
        (["zoo", "add", "{d}/run", "mine", "--zoo-dir", "{d}/zoo"],
         "zoo entry 'mine' in '{d}/zoo'", "zoo/mine.lock"),
    ],
)  # fmt: skip
def test_other_writers_refuse_an_output_another_process_writes(
    tmp_path, capsys, monkeypatch, hold, argv, output, lock
):
    """``bench --json``, ``experiment`` and ``zoo add`` (whose two processes could leave one's
    card beside the other's weights) are refused the same way, before any work."""
    from semcom import schemes

    monkeypatch.setattr(schemes, "get_scheme", lambda *a, **k: pytest.fail("ran beside"))
    _fake_run(tmp_path)
    proc = hold(tmp_path / lock)
    line = _run_err(capsys, [w.format(d=tmp_path) for w in argv])
    assert f"{output.format(d=tmp_path)} is being written by another semcom process " in line
    assert f"(pid {proc.pid}) right now" in line
    written = {p.name for p in tmp_path.iterdir()} - {"run", "zoo"}
    assert written == ({lock} if "/" not in lock else set())  # the holder's lock only


def test_a_refused_training_start_removes_only_its_own_lock(tmp_path, monkeypatch):
    """A start refused before anything was written removes the run folder it created, but
    never another process's lock file in it (it did remove a lone ``.lock``: a second process
    that had just locked it would then run with a lock no one else can see)."""
    from semcom.train import engine

    run = tmp_path / "r"

    def refused(self, resume, stop_at_step):
        run.mkdir()  # as its own lock did; released, another process locks the folder now
        OutputLock(run / engine.LOCK_FILE, "x").acquire()
        raise ValueError("unknown data set")

    monkeypatch.setattr(engine.Trainer, "_fit", refused)
    with pytest.raises(ValueError, match="unknown data set"):
        engine.Trainer(object(), engine.TrainConfig(out=str(run))).fit()
    assert (run / engine.LOCK_FILE).exists()
    monkeypatch.undo()
    with pytest.raises(OutputBusyError):
        OutputLock(run / engine.LOCK_FILE, "x").acquire()


def _held_by_another_program(path: Path, text: str) -> int:
    """An open file description of ``path`` holding its flock, with ``text`` written (as
    another program, or a semcom process before it wrote its pid, would hold it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, text.encode())
    return fd


@pytest.mark.parametrize(
    ("text", "named"),
    [("", ""), ("hello world\n", ""), ("4242\n", " (pid 4242)"),
     ("4242 elsewhere.example\n", " (pid 4242 on elsewhere.example)")],
)  # fmt: skip
def test_the_refusal_names_only_what_the_lock_file_says(tmp_path, text, named):
    """The holder is named from its lock file when it holds a pid (and a host, when another
    machine's); an empty file (not written yet) or another program's text names no one."""
    path = tmp_path / "r.json.lock"
    fd = _held_by_another_program(path, text)
    try:
        with pytest.raises(OutputBusyError) as e:
            OutputLock(path, "--out").acquire()
    finally:
        os.close(fd)
    assert str(e.value) == (
        f"--out is being written by another semcom process{named} right now: wait for it to "
        "end, or give another --out"
    )


def test_a_lock_file_left_with_a_longer_line_is_rewritten_whole(tmp_path):
    """The pid line replaces whatever a killed process (or another program) left in the lock
    file, not only its first bytes (a tail left behind would name a wrong host)."""
    path = tmp_path / "r.json.lock"
    path.write_text("123456789 a-much-longer-host-name.example.org\n")
    with OutputLock(path, "--out"):
        assert path.read_text() == f"{os.getpid()} {socket.gethostname()}\n"


def test_an_unexpected_flock_error_is_that_error(tmp_path, monkeypatch):
    """flock failing otherwise than 'held' or 'no locks here' (EIO) raises that OSError, not a
    refusal naming another process, and leaves no descriptor open."""
    import errno

    opened: list[int] = []
    real_open = os.open

    def tracked(*args):
        opened.append(real_open(*args))
        return opened[-1]

    def broken(fd, op):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(fcntl, "flock", broken)
    monkeypatch.setattr(os, "open", tracked)
    with pytest.raises(OSError, match="I/O error") as e:
        OutputLock(tmp_path / "r.json.lock", "--out").acquire()
    assert not isinstance(e.value, OutputBusyError)
    with pytest.raises(OSError):  # closed
        os.fstat(opened[0])


def test_releasing_twice_leaves_the_next_holders_lock_alone(tmp_path):
    """A second release of a released lock does nothing (the docstring's 'nothing when not
    held'): it must not remove the lock file another writer holds by then."""
    path = tmp_path / "r.json.lock"
    first = OutputLock(path, "--out").acquire()
    first.release()
    with OutputLock(path, "--out"):
        first.release()
        assert path.exists()
        with pytest.raises(OutputBusyError):
            OutputLock(path, "--out").acquire()


def test_rank0_refusal_stands_without_a_process_group(tmp_path, hold):
    """world > 1 before the process group is up (nothing to broadcast over): rank 0 still
    raises its own refusal, it does not go on writing beside the holder."""
    path = tmp_path / "r.json.lock"
    proc = hold(path)
    with pytest.raises(OutputBusyError, match=f"pid {proc.pid}"):
        OutputLock(path, "--out", rank=0, world=2).acquire()
