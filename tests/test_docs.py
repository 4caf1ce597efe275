"""The commands we publish still run: every ``semcom`` command in the README's code blocks, in
the ``meta`` of every results file and in every zoo card parses with today's CLI and names
only registered schemes (papers that do not reproduce are our users' first complaint; a
renamed option would silently break the recipes)."""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
from pathlib import Path

import pytest

from semcom.cli import build_parser
from semcom.devices import command_args
from semcom.schemes import list_schemes

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "src" / "semcom" / "zoo" / "checkpoints"
#: README placeholders that stand for a choice of values (`naive|waterfill`, `[--steps K]`,
#: `<variant>`): such lines document a family of commands and are not parsed
_PLACEHOLDER = re.compile(r"[|<>\[\]]")


def _readme_commands() -> list[str]:
    """``semcom ...`` lines of the README's code blocks, continuation lines joined, comments
    dropped, shell variables of the same block (``C="..."``) expanded and ``...`` (the options
    of the previous command) removed."""
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        block = block.replace("\\\n", " ")
        env: dict[str, str] = {}
        for line in block.splitlines():
            m = re.fullmatch(r'\s*([A-Z_][A-Z0-9_]*)="([^"]*)"\s*', line)
            if m:
                env[m.group(1)] = m.group(2)
                continue
            for name, value in env.items():
                line = line.replace(f"${name}", value)
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:1] == ["semcom"]:
                    out.append(shlex.join(w for w in words if w != "..."))
    return out


def _strings(obj: object):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def _recorded_commands() -> list[tuple[str, str]]:
    """(file, command) of every ``semcom ...`` string in results/*.json and the zoo cards."""
    files = sorted((ROOT / "results").glob("*.json")) + sorted(CARDS.glob("*.json"))
    found = []
    for f in files:
        for s in _strings(json.loads(f.read_text())):
            if s.startswith(("semcom ", "torchrun ")):  # lineage chains commands with &&
                found += [(f.relative_to(ROOT).as_posix(), c.strip()) for c in s.split("&&")]
    return found


README_COMMANDS = _readme_commands()
RECORDED = _recorded_commands()


@functools.cache
def _parser_and_schemes() -> tuple[argparse.ArgumentParser, frozenset[str]]:
    return build_parser(), frozenset(s.name for s in list_schemes())


def _check(command: str) -> None:
    words = command_args(command)  # semcom ... or torchrun ... -m semcom.cli ...
    assert words is not None, command
    parser, known = _parser_and_schemes()
    args = parser.parse_args(words)  # SystemExit(2) on an unknown or bad option
    unknown = [s for s in getattr(args, "scheme", None) or [] if s not in known]
    assert not unknown, f"unregistered scheme(s) {unknown} in: {command}"


def test_commands_were_found() -> None:
    # the extraction itself: a README or results layout change must not silently skip all
    assert len(README_COMMANDS) >= 30
    assert {c.split()[1] for c in README_COMMANDS} >= {"eval", "merge", "plot", "train", "bench"}
    assert len({f for f, _ in RECORDED if f.startswith("results/")}) >= 40
    assert any(f.startswith("src/semcom/zoo/") for f, _ in RECORDED)


@pytest.mark.parametrize(
    "command", [c for c in README_COMMANDS if not _PLACEHOLDER.search(c)], ids=lambda c: c[:60]
)
def test_readme_command_parses(command: str) -> None:
    _check(command)


@pytest.mark.parametrize(
    "where, command", RECORDED, ids=[f"{f}-{i}" for i, (f, _) in enumerate(RECORDED)]
)
def test_recorded_command_parses(where: str, command: str) -> None:
    _check(command)


def test_check_catches_a_renamed_option_and_an_unknown_scheme() -> None:
    # the check can fail: an option that does not exist and a misspelt scheme
    with pytest.raises(SystemExit):
        _check("semcom eval --scheme vae --no-such-option 1 --out x.json")
    with pytest.raises(AssertionError, match="unregistered"):
        _check("semcom eval --scheme vea --snr 0 --out x.json")


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_python_blocks_run(capsys) -> None:
    """The README's Python API example runs as printed (a renamed function or argument, or a
    changed default, would break the first thing a notebook user copies)."""
    blocks = _readme_python_blocks()
    assert blocks, "the README has no Python example"
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert re.search(r"\+5\.0 dB  CBR 0\.06\d+  PSNR \d\d\.\d\d dB", out), out
