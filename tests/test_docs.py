"""The commands we publish still run: every ``semcom`` command in the code blocks of the README
and ``docs/*.md``, in the ``meta`` of every results file and in every zoo card parses with
today's CLI and names only registered schemes (papers that do not reproduce are our users'
first complaint; a renamed option would silently break the recipes)."""

from __future__ import annotations

import argparse
import csv
import functools
import io
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
#: the pages we publish: the README and the pages it links to
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: README placeholders that stand for a choice of values (`naive|waterfill`, `[--steps K]`,
#: `<variant>`): such lines document a family of commands and are not parsed
_PLACEHOLDER = re.compile(r"[|<>\[\]]")


def _page_commands() -> list[str]:
    """``semcom ...`` lines of the code blocks of every page, continuation lines joined, comments
    dropped, shell variables of the same block (``C="..."``) expanded and ``...`` (the options
    of the previous command) removed."""
    text = "\n".join(p.read_text() for p in PAGES)
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


PAGE_COMMANDS = _page_commands()
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
    # the extraction itself: a pages or results layout change must not silently skip all
    assert len(PAGE_COMMANDS) >= 30
    assert {c.split()[1] for c in PAGE_COMMANDS} >= {"eval", "merge", "plot", "train", "bench"}
    assert len({f for f, _ in RECORDED if f.startswith("results/")}) >= 40
    assert any(f.startswith("src/semcom/zoo/") for f, _ in RECORDED)


@pytest.mark.parametrize(
    "command", [c for c in PAGE_COMMANDS if not _PLACEHOLDER.search(c)], ids=lambda c: c[:60]
)
def test_page_command_parses(command: str) -> None:
    _check(command)


@pytest.mark.parametrize(
    "where, command", RECORDED, ids=[f"{f}-{i}" for i, (f, _) in enumerate(RECORDED)]
)
def test_recorded_command_parses(where: str, command: str) -> None:
    _check(command)


def test_results_curves_keep_per_image_values() -> None:
    # every curve of an eval or merged file in results/ keeps its per-image values, so that
    # `semcom compare` pairs any two of a file (the CIFAR-10 files were the last without:
    # re-run whole on 2026-12-01, docs/results.md "Do the files still come out?")
    files = [f for f in sorted((ROOT / "results").glob("*.json")) if f.stat().st_size]
    docs = [(f.name, json.loads(f.read_text())) for f in files]
    curves = [(n, r) for n, d in docs if isinstance(d, dict) for r in d.get("runs", [])]
    assert len(curves) >= 100  # the extraction itself
    missing = [
        f"{n}: {r['scheme']}@{r.get('cbr_str')}" for n, r in curves if not r.get("per_image")
    ]
    assert missing == []


def test_compare_pairs_the_cifar10_curves(capsys) -> None:
    # the merged CIFAR-10 file's curves pair: 2000 images each, the means the file stores
    from semcom.cli import main

    path = ROOT / "results" / "cifar10-awgn.json"
    runs = {(r["scheme"], r["cbr_str"]): r for r in json.loads(path.read_text())["runs"]}
    args = ["compare", str(path), "--scheme", "deepjscc@1/6", "--against", "jpeg+capacity@1/6"]
    assert main([*args, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["metric"] for r in rows] == ["psnr"] * 5
    a, b = runs["deepjscc", "1/6"], runs["jpeg+capacity", "1/6"]
    for row in rows:
        i = a["snr_db"].index(float(row["SNR (dB)"]))
        assert int(row["n"]) == 2000
        # the CSV prints 6 significant digits, as the per-image values keep
        assert float(row["A"]) == pytest.approx(a["psnr"][i], abs=1e-3)
        assert float(row["B"]) == pytest.approx(b["psnr"][i], abs=1e-3)
        assert float(row["95 % CI low"]) > 0  # DeepJSCC better at every SNR


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


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _links(page: Path) -> list[str]:
    """Targets of the page's Markdown links and images, code blocks and spans left out."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def _dead_links(page: Path) -> list[str]:
    """The page's relative links that name no file of the repository, or no heading of the
    Markdown page they point into."""
    dead = []
    for target in _links(page):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_file():
            dead.append(target)
        elif anchor and dest.suffix == ".md":
            heads = re.findall(r"^#+ (.+)$", dest.read_text(), re.M)
            if anchor not in {_anchor(h) for h in heads}:
                dead.append(target)
    return dead


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_links_resolve(page: Path) -> None:
    """Every relative link and image of a page names a file of the repository (and a heading of
    the page it points into): moving a results figure or splitting a page must not leave dead
    links behind."""
    assert page.name != "README.md" or len(_links(page)) >= 3  # the README links its pages
    assert _dead_links(page) == []


def test_link_check_catches_a_dead_link(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# Data and weights\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n\n[gone](missing.png), [top](#top), [no](#nowhere), `[code](span.md)`,\n"
        "[ok](there.md#data-and-weights), [bad](there.md#other), [web](https://x.org/a)\n"
    )
    assert _dead_links(page) == ["missing.png", "#nowhere", "there.md#other"]
    assert _anchor("Speed (`semcom bench`, 2 images)") == "speed-semcom-bench-2-images"


#: a docstring's or comment's citation of a page: ``docs/math.md §1.2 eq. 30``, ``docs/math.md
#: §1, §2 Alg. 2``, ``docs/math.md B13``; group 1 the file, group 2 its sections and labels
_CITATION = re.compile(
    r"([\w./-]*\w\.md)((?:(?:\s*[,-]\s*|\s+)"
    r"(?:§\d+(?:\.\d+)*|eqs?\. \d+(?:[/-]\d+)*|Alg\. \d+|step \d+|[AB]\d+\b))*)"
)
_README_CITATION = re.compile(r'README "([^"]+)"')
#: the files that cite: the library, the tests (this one names made-up pages) and benchmarks
_CITING = sorted(
    p
    for p in [*ROOT.glob("src/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("benchmarks/*.py")]
    if p.name != "test_docs.py"
)


def _section(text: str, number: str) -> str | None:
    """The heading ``§number ...`` of a page and its body, subsections included, or None."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"(#+) §(\d+(?:\.\d+)*)\s", line)
        if m and m.group(2) == number:
            end = next(
                (
                    j
                    for j in range(i + 1, len(lines))
                    if re.match(rf"#{{1,{len(m.group(1))}}} ", lines[j])
                ),
                len(lines),
            )
            return "\n".join(lines[i:end])
    return None


def _labels(labels: str) -> list[str]:
    """``eq. 19/25`` -> ``eq. 19``, ``eq. 25``; ``eqs. 5-9`` stays one label."""
    m = re.fullmatch(r"eq\. (\d+(?:/\d+)+)", labels)
    return [f"eq. {n}" for n in m.group(1).split("/")] if m else [labels]


def _bad_citations(text: str) -> list[str]:
    """Citations of ``text`` that name no file of the repository, no ``§`` heading of the page,
    no label (``eq. 19``, ``Alg. 2``, ``step 1``, ``B13``) in the cited section (or page), or
    no heading of the README."""
    bad = []
    for m in _CITATION.finditer(text):
        page = ROOT / m.group(1)
        if not page.is_file():
            bad.append(m.group(0))
            continue
        doc = page.read_text()
        scope = doc
        for item in re.findall(
            r"§\d+(?:\.\d+)*|eqs?\. \d+(?:[/-]\d+)*|Alg\. \d+|step \d+|[AB]\d+", m.group(2)
        ):
            if item.startswith("§"):
                scope = _section(doc, item[1:])
                if scope is None:
                    bad.append(f"{m.group(1)} {item}")
                    break
            elif any(not re.search(rf"(?<!\w){re.escape(x)}(?!\w)", scope) for x in _labels(item)):
                bad.append(f"{m.group(0).strip()}: {item}")
    heads = re.findall(r"^#+ (.+)$", (ROOT / "README.md").read_text(), re.M)
    for m in _README_CITATION.finditer(text):
        if not any(h.startswith(m.group(1)) for h in heads):
            bad.append(m.group(0))
    return bad


def test_docstring_citations_resolve() -> None:
    """Every page a docstring or comment cites (``docs/math.md §1.2 eq. 30``, ``README
    "Conventions"``) is shipped, and every section, equation or correction label it names is a
    heading of that page or stands in the cited section: users never saw the internal notes the
    docstrings once cited (``math.md``, ``design.md``)."""
    bad = {}
    n = 0
    for path in _CITING:
        text = path.read_text()
        n += len(_CITATION.findall(text)) + len(_README_CITATION.findall(text))
        if found := _bad_citations(text):
            bad[path.relative_to(ROOT).as_posix()] = found
    assert n >= 40  # the extraction itself
    assert bad == {}


def test_citation_check_catches_a_missing_page_section_or_label() -> None:
    good = "docs/math.md §1.2, eq. 19/25; docs/math.md §1, §2 Alg. 2; docs/math.md B13"
    assert _bad_citations(good + '; README "Conventions"') == []
    assert _bad_citations(
        'math.md §1; docs/math.md §9; docs/math.md §2 eq. 99; design.md §2; README "Nowhere"'
    ) == [
        "math.md §1",
        "docs/math.md §9",
        "docs/math.md §2 eq. 99: eq. 99",
        "design.md §2",
        'README "Nowhere"',
    ]
