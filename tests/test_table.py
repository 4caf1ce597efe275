"""Results for a paper: `semcom table` as Markdown, CSV or LaTeX (eval/table.py: --out, --best,
--scheme, --snr, --label) and `semcom plot` as PNG, PDF or SVG (several metrics, selected and
relabelled runs), with the odd inputs they used to mishandle."""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from pathlib import Path

import pytest

from semcom.cli import main
from semcom.eval.stats import mean_interval, rms_interval

NAMES = ["i0", "i1", "i2"]


def _run(scheme, values, snrs=(0.0, 10.0), cbr=1 / 16, metric="psnr"):
    """A results run with per-image values ``values[snr][image]`` of ``metric``."""
    return {
        "scheme": scheme,
        "cbr": cbr,
        "snr_db": list(snrs),
        metric: [round(sum(v) / len(v), 4) for v in values],
        "per_image": {"images": list(NAMES), metric: [list(v) for v in values]},
    }


def _doc(runs, dataset=None):
    return {
        "dataset": dataset or {"name": "kodak", "n_images": 3},
        "channel": {"name": "awgn", "csi": "perfect"},
        "runs": runs,
        "meta": {"seed": 0, "batch_size": 8},
    }


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


X = [[20.0, 24.0, 29.0], [30.0, 31.0, 32.0]]
XDM = [[21.0, 25.1, 29.9], [30.0, 31.2, 32.1]]


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Two runs with PSNR and LPIPS per image, and an old run (means alone) at other SNRs."""
    x, xdm = _run("x", X), _run("x+dm", XDM)
    for run, lp in (
        (x, [[0.5, 0.4, 0.3], [0.2, 0.1, 0.1]]),
        (xdm, [[0.4, 0.3, 0.3], [0.2, 0.1, 0.2]]),
    ):
        run["lpips"] = [round(sum(v) / 3, 4) for v in lp]
        run["per_image"]["lpips"] = lp
    old = {"scheme": "old", "cbr": 1 / 12, "snr_db": [-5.0, 10.0], "psnr": [18.0, 31.5]}
    return _write(tmp_path / "r.json", _doc([x, xdm, old]))


def _table(capsys, *argv) -> list[str]:
    assert main(["table", *map(str, argv)]) == 0
    return capsys.readouterr().out.splitlines()


# ------------------------------------------------------------------------------ table
def test_table_formats_csv_and_latex(sweep, capsys):
    """The same cells as the Markdown table: CSV for a spreadsheet or pgfplotstable (numbers
    unrounded, intervals as low / high columns, empty cells where a run has none), LaTeX as a
    booktabs tabular with numbers in math mode and the notes as comments."""
    rows = list(csv.reader(io.StringIO("\n".join(_table(capsys, sweep, "--format", "csv")))))
    assert rows[0] == ["scheme", "CBR", "metric", "-5 dB", "0 dB", "10 dB"]
    assert rows[1] == ["x", "1/16", "psnr", "", "24.3333", "31"]
    assert rows[3] == ["old", "1/12", "psnr", "18", "", "31.5"]
    lines = _table(capsys, sweep, "--format", "csv", "--ci", "--metrics", "psnr", "lpips")
    rows = list(csv.reader(io.StringIO("\n".join(lines))))
    assert rows[0][3:6] == ["-5 dB", "-5 dB low", "-5 dB high"]
    hw = mean_interval(X[0]).half_width
    assert rows[1][:3] == ["x", "1/16", "psnr"]
    assert [float(c) for c in rows[1][6:9]] == pytest.approx([24.3333, 24.3333 - hw, 24.3333 + hw])
    assert rows[2][2] == "lpips" and rows[5] == ["old", "1/12", "psnr", "18", "", "", "", "", "",
                                                 "31.5", "", ""]  # fmt: skip

    tex = _table(capsys, sweep, "--format", "latex", "--ci")
    assert tex[0] == r"\begin{tabular}{lllrrr}" and tex[1] == r"\toprule"
    assert tex[2] == r"scheme & CBR & metric & $-5$ dB & 0 dB & 10 dB \\"
    assert tex[4] == rf"x & 1/16 & PSNR (dB) & -- & $24.33 \pm {hw:.2f}$ & $31.00 \pm 2.48$ \\"
    assert tex[6] == r"old & 1/12 & PSNR (dB) & $18.00$ & -- & $31.50$ \\"
    assert tex[7:9] == [r"\bottomrule", r"\end{tabular}"]
    assert tex[9].startswith("% ± : half-width of the 95 % t-interval")
    assert "mean alone" in tex[9] and "RMSE" not in tex[9]  # an old run, but no RMSE row


def test_table_best_in_bold_by_each_metrics_direction(sweep, capsys):
    """--best: per metric and SNR the highest PSNR, the lowest LPIPS, in bold (all of the
    values equal as printed); refused for CSV."""
    lines = _table(capsys, sweep, "--metrics", "psnr", "lpips", "--best")
    assert lines[2] == "| x | 1/16 | psnr | - | 24.33 | 31.00 |"
    assert lines[3] == "| x | 1/16 | lpips | - | 0.400 | **0.133** |"
    assert lines[4] == "| x+dm | 1/16 | psnr | - | **25.33** | 31.10 |"
    assert lines[5] == "| x+dm | 1/16 | lpips | - | **0.333** | 0.167 |"
    assert lines[6] == "| old | 1/12 | psnr | **18.00** | - | **31.50** |"
    assert lines[-1] == "bold: the best value of each metric at each SNR (as printed)"
    tex = _table(capsys, sweep, "--format", "latex", "--best", "--ci", "--scheme", "x+dm")
    assert rf"$\mathbf{{25.33}} \pm {mean_interval(XDM[0]).half_width:.2f}$" in tex[4]
    # a tie as printed: both bold
    tie = _write(sweep.with_name("t.json"), _doc([_run("a", [[20.001] * 3] * 2),
                                                  _run("b", [[19.999] * 3] * 2)]))  # fmt: skip
    assert [ln.count("**20.00**") for ln in _table(capsys, tie, "--best")[2:4]] == [2, 2]
    assert main(["table", str(sweep), "--format", "csv", "--best"]) == 2
    assert "CSV" in capsys.readouterr().err


def test_table_selects_orders_and_relabels_runs_and_snrs(sweep, capsys):
    """--scheme picks runs in the order given (named as compare names them), --snr the
    columns, --label the text of a run's scheme cell."""
    lines = _table(capsys, sweep, "--scheme", "old", "--scheme", "x+dm@1/16", "--snr", "10", "0",
                   "--label", "x+dm=X + DM (ours)")  # fmt: skip
    assert lines[0] == "| scheme | CBR | metric | 0 dB | 10 dB |"
    assert lines[2:] == ["| old | 1/12 | psnr | - | 31.50 |",
                         "| X + DM (ours) | 1/16 | psnr | 25.33 | 31.10 |"]  # fmt: skip
    for argv, said in (
        (
            ["--scheme", "nope"],
            "no run 'nope' in the given files; they hold: old@1/12, x+dm@1/16, x@1/16",
        ),
        (["--snr", "7"], "no run has SNR 7 dB (they hold: -5 0 10)"),
        (["--scheme", "x", "--snr", "-5"], "no run has SNR -5 dB (they hold: 0 10)"),
        (["--label", "y=Y"], "no run 'y'"),
    ):
        assert main(["table", str(sweep), *argv]) == 2, argv
        assert said in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no '=': a usage error
        main(["table", str(sweep), "--label", "x"])
    assert "expected RUN=TEXT" in capsys.readouterr().err


def test_label_splits_outside_brackets():
    from semcom.eval.table import split_label

    assert split_label("deepjscc[codec=a=b]@1/16=DeepJSCC = long") == (
        "deepjscc[codec=a=b]@1/16",
        "DeepJSCC = long",
    )
    for bad in ("x", "=X", "x=", "a[b=c]", "=X=Y"):  # split at the first "=" only
        with pytest.raises(ValueError, match="RUN=TEXT"):
            split_label(bad)


def test_table_out_writes_by_suffix_and_keeps_other_files(sweep, tmp_path, capsys):
    """--out: the format from the suffix (.md .csv .tex, in any case) unless --format says,
    written whole; an existing file this command did not write is refused (--force replaces
    it), its own earlier output is replaced."""
    for suffix, first in ((".md", "| scheme | CBR |"), (".csv", "scheme,CBR,metric,"),
                          (".tex", r"\begin{tabular}"), (".txt", "| scheme | CBR |"),
                          (".CSV", "scheme,CBR,metric,")):  # fmt: skip
        out = tmp_path / "t" / f"table{suffix}"
        assert main(["table", str(sweep), "--out", str(out)]) == 0
        assert capsys.readouterr().out == f"wrote {out} ({_FMT[suffix]})\n"
        assert out.read_text().startswith(first) and out.read_text().endswith("\n")
        assert main(["table", str(sweep), "--metrics", "lpips", "--out", str(out)]) == 0  # own
        capsys.readouterr()
        assert "lpips" in out.read_text().lower() and "-5 dB" not in out.read_text()
    out = tmp_path / "t" / "table.tex"
    assert main(["table", str(sweep), "--out", str(out), "--format", "csv"]) == 0
    assert out.read_text().startswith("scheme,CBR,metric,")
    paper = tmp_path / "paper.tex"
    paper.write_text("\\documentclass{article}\n")
    capsys.readouterr()
    assert main(["table", str(sweep), "--out", str(paper)]) == 2
    assert "is not a table" in capsys.readouterr().err and paper.read_text().startswith("\\doc")
    assert main(["table", str(sweep), "--out", str(paper), "--force"]) == 0
    assert paper.read_text().startswith(r"\begin{tabular}")
    assert main(["table", str(sweep), "--out", str(tmp_path)]) == 2  # a folder


_FMT = {".md": "markdown", ".csv": "csv", ".tex": "latex", ".txt": "markdown", ".CSV": "csv"}


def test_table_shows_missing_values_as_a_dash_and_escapes_names(tmp_path, capsys):
    """A null value (a metric that could not be computed, read back as NaN) is '-' as a value
    the run has not (it printed 'nan'); '|' in a name no longer splits a Markdown cell, LaTeX's
    specials are escaped, unicode is kept; --ci says 'mean alone' only when a run has no
    per-image values."""
    run = _run("a|b_c&ü", X)
    run["psnr"][1] = None
    run["per_image"]["psnr"][1] = [None] * 3
    f = _write(tmp_path / "r.json", _doc([run]))
    lines = _table(capsys, f, "--ci")
    hw = mean_interval(X[0]).half_width
    assert lines[2] == rf"| a\|b_c&ü | 1/16 | psnr | 24.33 ± {hw:.2f} | - |"
    assert "mean alone" not in lines[-1] and "RMSE" not in lines[-1]
    tex = _table(capsys, f, "--format", "latex")
    assert tex[4].startswith(r"a|b\_c\&ü & 1/16 & PSNR (dB) & $24.33$ & -- \\")
    assert _table(capsys, f, "--format", "csv")[1] == "a|b_c&ü,1/16,psnr,24.3333,"


def test_table_snr_estimate_intervals_in_every_format(tmp_path, capsys):
    """The RMSE's asymmetric interval: [low, high] in Markdown and LaTeX, low / high in CSV."""
    errs = [[1.0, -0.5, 2.0], [0.2, 0.1, -0.4]]
    run = _run("x", X)
    run["snr_est_rmse_db"] = [rms_interval(e)[0] for e in errs]
    run["per_image"]["snr_error_db"] = errs
    f = _write(tmp_path / "r.json", _doc([run]))
    rms, lo, hi = rms_interval(errs[0])
    md = _table(capsys, f, "--metrics", "snr_est_rmse_db", "--ci")
    assert md[2].split(" | ")[3] == f"{rms:.2f} [{lo:.2f}, {hi:.2f}]" and "RMSE" in md[-1]
    tex = _table(capsys, f, "--metrics", "snr_est_rmse_db", "--ci", "--format", "latex")
    assert f"${rms:.2f}\\ [{lo:.2f}, {hi:.2f}]$" in tex[4]
    cells = _table(capsys, f, "--metrics", "snr_est_rmse_db", "--ci", "--format", "csv")[1]
    assert [float(c) for c in cells.split(",")[4:6]] == pytest.approx([lo, hi], rel=1e-5)


def test_the_shipped_results_as_a_latex_table(capsys):
    """The README's table from the shipped file: the seven schemes, best in bold per SNR."""
    f = Path(__file__).resolve().parents[1] / "results" / "kodak-awgn.json"
    schemes = ["vae", "vae+dm", "deepjscc", "deepjscc+dm", "adjscc", "adjscc+dm",
               "webp+capacity@1/16"]  # fmt: skip
    picked = [w for s in schemes for w in ("--scheme", s)]
    snrs = ["--snr", "-10", "-5", "0", "5", "10", "20"]
    tex = _table(capsys, f, *picked, *snrs, "--best", "--format", "latex")
    rows = [ln.split(" & ") for ln in tex[4:11]]
    assert [r[0] for r in rows] == [s.split("@")[0] for s in schemes]
    bold = [[c for c, cell in enumerate(r) if "mathbf" in cell] for r in rows]
    assert bold[5] == [3, 4] and bold[6] == [5, 6, 7, 8]  # adjscc+dm at -10 / -5, webp above


def _anchor(path: Path, dataset: dict | None = None) -> Path:
    """A file of published curves: 'paper' at 0 and 5 dB, a 'bound' at 10 dB above every run."""
    runs = [{"scheme": "paper", "cbr": 1 / 16, "snr_db": [0.0, 5.0], "psnr": [27.0, 29.0]},
            {"scheme": "bound", "cbr": 1 / 16, "snr_db": [10.0], "psnr": [40.0]}]  # fmt: skip
    return _write(path, {**_doc(runs, dataset), "anchor": True})


def test_table_anchors_are_rows_marked_published_never_best(sweep, tmp_path, capsys):
    """--anchors FILE (as plot's): the published curves as rows after the runs, their scheme
    marked '[published]', their SNRs among the columns ('-' where a row has none); --best
    ranks the runs measured only (a paper's plot read by eye, or a bound, is not bold);
    --scheme, --snr, --label and --format treat them as the runs."""
    a = _anchor(tmp_path / "a.json")
    lines = _table(capsys, sweep, "--anchors", a, "--best")
    assert lines[0] == "| scheme | CBR | metric | -5 dB | 0 dB | 5 dB | 10 dB |"  # no file column
    assert lines[2:7] == [
        "| x | 1/16 | psnr | - | 24.33 | - | 31.00 |",
        "| x+dm | 1/16 | psnr | - | **25.33** | - | 31.10 |",
        "| old | 1/12 | psnr | **18.00** | - | - | **31.50** |",
        "| paper [published] | 1/16 | psnr | - | 27.00 | 29.00 | - |",
        "| bound [published] | 1/16 | psnr | - | - | - | 40.00 |",
    ]
    assert lines[-1] == ("bold: the best value of each metric at each SNR (as printed) of the "
                         "runs measured; the [published] rows are not ranked")  # fmt: skip
    assert "**" not in "".join(_table(capsys, sweep, "--anchors", a, "--scheme", "paper", "--best"))
    tex = _table(capsys, sweep, "--anchors", a, "--scheme", "paper", "--scheme", "x",
                 "--snr", "5", "0", "--label", "paper=Paper [3]", "--format", "latex")  # fmt: skip
    assert tex[2] == r"scheme & CBR & metric & 0 dB & 5 dB \\"
    assert tex[4:6] == [r"Paper [3] & 1/16 & PSNR (dB) & $27.00$ & $29.00$ \\",
                        r"x & 1/16 & PSNR (dB) & $24.33$ & -- \\"]  # fmt: skip
    text = "\n".join(_table(capsys, sweep, "--anchors", a, "--format", "csv", "--ci"))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[4] == ["paper [published]", "1/16", "psnr", "", "", "", "27", "", "", "29", "", "",
                       "", "", ""]  # fmt: skip
    # a metric the papers did not report: no row of theirs, said
    assert main(["table", str(sweep), "--anchors", str(a), "--metrics", "lpips"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 4 and "published" not in out
    assert f"semcom: warning: no 'lpips' in {sweep}: run 2 (old); {a}: run 0 (paper); " in err
    # two anchor files: each row led by its file; one measured on other images: said
    b = _anchor(tmp_path / "b.json", {"name": "cifar10", "n_images": 10000})
    assert main(["table", str(sweep), "--anchors", str(a), str(b), "--snr", "10"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "| file | scheme | CBR | metric | 10 dB |"
    assert out.splitlines()[-1] == "| b.json | bound [published] | 1/16 | psnr | 40.00 |"
    assert err == (f"semcom: warning: anchor {b} was measured on cifar10, the results on kodak: "
                   "not the same images\n")  # fmt: skip
    # a missing file, a folder: said as --anchors
    for bad, said in ((tmp_path / "nope.json", "no such file"), (tmp_path, "a folder")):
        assert main(["table", str(sweep), "--anchors", str(bad)]) == 2
        assert f"--anchors {str(bad)!r}: {said}" in capsys.readouterr().err


def test_the_shipped_results_with_the_shipped_anchors(capsys):
    """The README's table of ours against the papers at 10 dB (their grid is 1, 4, 7, 10, 13)."""
    root = Path(__file__).resolve().parents[1] / "results"
    anchors = root / "anchors" / "kodak-awgn.json"
    lines = _table(capsys, root / "kodak-awgn.json", "--anchors", anchors, "--scheme", "adjscc+dm",
                   "--scheme", "WITT", "--snr", "10", "--best")  # fmt: skip
    assert lines[2].startswith("| adjscc+dm | 1/16 | psnr | **")
    assert lines[3] == "| WITT [published] | 1/16 | psnr | 33.60 |"


def test_results_table_old_home_is_a_deprecated_alias(sweep):
    """results_table moved from semcom.eval.plot to semcom.eval.table: the old name still
    works (the same function: the same table, with its positional arguments) with a
    DeprecationWarning naming the new home; other missing names stay AttributeErrors."""
    import semcom.eval.plot as plot
    from semcom.eval.table import results_table

    with pytest.warns(DeprecationWarning, match=r"semcom\.eval\.table\.results_table"):
        from semcom.eval.plot import results_table as old
    assert old is results_table
    with pytest.warns(DeprecationWarning, match="moved to semcom.eval.table"):
        text = plot.results_table([sweep], ("psnr",), 1, 0.95)
    assert text == results_table([sweep], ("psnr",), 1, 0.95)
    with pytest.raises(AttributeError, match="has no attribute 'results_tabl'"):
        plot.results_tabl  # noqa: B018


# ------------------------------------------------------------------------------ plot
def _figures(monkeypatch) -> list:
    import semcom.eval.plot as plot

    figs: list = []
    monkeypatch.setattr(plot, "save_figure", lambda fig, out, dpi: figs.append(fig) or Path(out))
    return figs


def test_plot_writes_vector_figures_by_suffix(sweep, tmp_path, capsys):
    """--out .pdf / .svg: vector figures (a PDF's text in TrueType fonts, no Type 3, which
    publishers' checks refuse); each is known as a figure when written again; another
    suffix is refused before any work."""
    for suffix, magic in ((".pdf", b"%PDF-"), (".svg", b"<?xml"), (".png", b"\x89PNG")):
        out = tmp_path / f"f{suffix}"
        assert main(["plot", str(sweep), "--out", str(out)]) == 0
        data = out.read_bytes()
        assert data.startswith(magic)
        assert main(["plot", str(sweep), "--out", str(out)]) == 0  # its own: replaced
    pdf = (tmp_path / "f.pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf
    assert b"<path" in (tmp_path / "f.svg").read_bytes()
    capsys.readouterr()
    assert main(["plot", str(sweep), "--out", str(tmp_path / "f.eps")]) == 2
    assert "PNG, PDF, SVG" in capsys.readouterr().err and not (tmp_path / "f.eps").exists()


def test_plot_keeps_a_pdf_or_svg_it_did_not_write(sweep, tmp_path, capsys):
    """A paper's PDF (its own producer; the info of a matplotlib figure it includes kept
    apart, as pdfTeX keeps it) and a drawing's SVG are not figures of ours."""
    from semcom.cli.outputs import _is_figure

    paper = tmp_path / "paper.pdf"
    paper.write_bytes(
        b"%PDF-1.5\n5 0 obj\n<< /PTEX.InfoDict << /Producer (Matplotlib pdf backend v3.9) >> >>"
        b"\nendobj\n9 0 obj\n<< /Producer (pdfTeX-1.40.25) >>\nendobj\n"
        b"trailer\n<< /Size 10 /Root 1 0 R /Info 9 0 R >>\n%%EOF\n"
    )
    drawing = tmp_path / "d.svg"
    drawing.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><!-- '
                       'made with Matplotlib --></svg>\n')  # fmt: skip
    for f in (paper, drawing):
        before = f.read_bytes()
        assert not _is_figure(f)
        assert main(["plot", str(sweep), "--out", str(f)]) == 2
        assert "is not a figure" in capsys.readouterr().err and f.read_bytes() == before
    assert main(["plot", str(sweep), "--out", str(paper), "--force"]) == 0
    assert _is_figure(paper)


def test_plot_several_metrics_selected_and_relabelled_runs(sweep, tmp_path, monkeypatch):
    """--metric psnr lpips: one panel each, a run in the same colour in both, one legend below;
    --scheme picks runs (of the files and anchors) in order, --label renames them; --title ''
    leaves the title out (it fell back to the default)."""
    anchor = _write(tmp_path / "a.json", {**_doc([{"scheme": "paper", "cbr": 1 / 16,
                                                   "snr_db": [1.0, 4.0], "psnr": [27.0, 29.0]}]),
                                          "anchor": True})  # fmt: skip
    figs = _figures(monkeypatch)
    assert main(["plot", str(sweep), "--anchors", str(anchor), "--metric", "psnr", "lpips",
                 "--scheme", "x+dm", "--scheme", "paper", "--scheme", "x",
                 "--label", "x+dm=X + DM (ours)", "--title", "", "--size", "7", "3",
                 "--out", str(tmp_path / "f.pdf")]) == 0  # fmt: skip
    (fig,) = figs
    left, right = fig.axes
    drawn = ["X + DM (ours)", "paper (CBR 1/16) [published]", "x (CBR 1/16)"]
    assert [ln.get_label() for ln in left.get_lines()] == drawn
    assert [ln.get_label() for ln in right.get_lines()] == ["X + DM (ours)", "x (CBR 1/16)"]
    colour = {ln.get_label(): ln.get_color() for ln in left.get_lines()}
    assert all(colour[ln.get_label()] == ln.get_color() for ln in right.get_lines())
    assert left.get_ylabel().startswith("PSNR") and right.get_ylabel().startswith("LPIPS")
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "X + DM (ours)", "paper (CBR 1/16) [published]", "x (CBR 1/16)"]  # fmt: skip
    assert left.get_legend() is None and not fig.get_suptitle() and not left.get_title()
    assert tuple(fig.get_size_inches()) == (7.0, 3.0)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_plot_draws_points_in_snr_order_and_only_finite_values(tmp_path, monkeypatch):
    """A sweep run with `--snr 10 0 5` keeps that order in its file: the line went 10 -> 0 -> 5
    (a chord back over the curve); a run without a finite value had an empty legend entry,
    an infinite value now is said."""
    figs = _figures(monkeypatch)
    f = _write(tmp_path / "r.json", _doc([
        {"scheme": "a", "cbr": None, "snr_db": [10.0, 0.0, 5.0], "psnr": [30.0, 20.0, 26.0]},
        {"scheme": "b", "cbr": None, "snr_db": [0.0, 10.0], "psnr": [None, None]},
        {"scheme": "c", "cbr": None, "snr_db": [0.0, 10.0], "psnr": [21.0, math.inf]},
    ]))  # fmt: skip
    from semcom.eval.plot import plot_results

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_results([f], "psnr", tmp_path / "p.png")
    (ax,) = figs[0].axes
    a, c = ax.get_lines()
    assert list(a.get_xdata()) == [0.0, 5.0, 10.0] and list(a.get_ydata()) == [20.0, 26.0, 30.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "c"]
    assert list(c.get_xdata()) == [0.0]
    assert [str(w.message) for w in caught] == ["c: psnr inf at 10 dB: not drawn"]
    only_b = _write(tmp_path / "b.json", _doc([
        {"scheme": "b", "cbr": None, "snr_db": [0.0], "psnr": [None]}]))  # fmt: skip
    with pytest.raises(ValueError, match="no run in the given files has metric 'psnr'"):
        plot_results([only_b], "psnr", tmp_path / "p.png")
    import matplotlib.pyplot as plt

    plt.close("all")


def test_plot_ci_bars_of_the_snr_estimate_rmse_as_the_table(tmp_path, monkeypatch):
    """--ci on the SNR estimate's RMSE: the RMSE's asymmetric interval from the per-image
    errors (the table's [low, high]); there were no bars, the per-image key being another."""
    figs = _figures(monkeypatch)
    errs = [[1.0, -0.5, 2.0], [0.2, 0.1, -0.4]]
    run = _run("x", X)
    run["snr_est_rmse_db"] = [rms_interval(e)[0] for e in errs]
    run["per_image"]["snr_error_db"] = errs
    f = _write(tmp_path / "r.json", _doc([run]))
    from semcom.eval.plot import plot_results

    plot_results([f], "snr_est_rmse_db", tmp_path / "p.png", ci=0.95)
    (ax,) = figs[0].axes
    segments = ax.containers[0].lines[2][0].get_segments()
    want = [rms_interval(e)[1:] for e in errs]
    got = [y for seg in segments for y in (seg[0][1], seg[1][1])]
    assert got == pytest.approx([y for w in want for y in w], rel=1e-9)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_plot_snr_range_draws_only_the_points_within(sweep, tmp_path, monkeypatch, capsys):
    """--snr LO HI: only the points from LO to HI dB (ends included) are drawn, of the runs and
    the anchors; the axes fit them (a curve's points outside do not stretch them) and a run
    with none inside has no legend entry; LO above HI, or nothing inside, is said."""
    a = _anchor(tmp_path / "a.json")
    figs = _figures(monkeypatch)
    out = str(tmp_path / "f.png")
    assert main(["plot", str(sweep), "--anchors", str(a), "--snr", "0", "5", "--out", out]) == 0
    (ax,) = figs[0].axes
    xs = {ln.get_label(): list(ln.get_xdata()) for ln in ax.get_lines()}
    assert xs == {"x (CBR 1/16)": [0.0], "x+dm (CBR 1/16)": [0.0],
                  "paper (CBR 1/16) [published]": [0.0, 5.0]}  # fmt: skip
    assert ax.get_ylim()[1] < 31.0 and -5 < ax.get_xlim()[0] and ax.get_xlim()[1] < 10
    assert main(["plot", str(sweep), "--snr", "-5", "-5", "--out", out]) == 0  # ends included
    assert [list(ln.get_xdata()) for ln in figs[1].axes[0].get_lines()] == [[-5.0]]
    capsys.readouterr()
    assert main(["plot", str(sweep), "--snr", "10", "0", "--out", out]) == 2
    assert "--snr 10 0: LO is above HI" in capsys.readouterr().err
    assert main(["plot", str(sweep), "--snr", "11", "30", "--out", out]) == 2
    assert "has metric 'psnr' between 11 and 30 dB" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plot", str(sweep), "--snr", "0", "--out", out])
    assert "expected 2 arguments" in capsys.readouterr().err
    import matplotlib.pyplot as plt

    plt.close("all")


def test_plot_dpi_sets_a_pngs_pixels_and_is_refused_for_vector_figures(sweep, tmp_path, capsys):
    """--dpi N: a PNG of W x H inches is W*N x H*N pixels (120 dpi unless given); a PDF or
    SVG is vector, so --dpi there is refused (it changed nothing), as are 0 and a PNG too
    large for matplotlib (2^16 pixels a side), before any figure is written."""
    from PIL import Image

    out = tmp_path / "f.png"
    for dpi, pixels in ((None, (480, 240)), ("50", (200, 100)), ("300", (1200, 600))):
        argv = ["plot", str(sweep), "--size", "4", "2", "--out", str(out)]
        assert main(argv + (["--dpi", dpi] if dpi else [])) == 0
        with Image.open(out) as im:
            assert im.size == pixels
    capsys.readouterr()
    for suffix in (".pdf", ".svg"):
        vector = tmp_path / f"f{suffix}"
        assert main(["plot", str(sweep), "--dpi", "300", "--out", str(vector)]) == 2
        assert "--dpi sets a PNG's resolution" in capsys.readouterr().err and not vector.exists()
    out.unlink()
    assert main(["plot", str(sweep), "--dpi", "20000", "--out", str(out)]) == 2
    assert "140000 x 90000 pixels, over 65535 a side" in capsys.readouterr().err
    assert not out.exists()
    # each side under the limit, 10 GB of pixels in all (63000 x 40500): refused before drawing
    assert main(["plot", str(sweep), "--dpi", "9000", "--out", str(out)]) == 2
    assert "63000 x 40500 pixels, over 65535 a side or 134 megapixels" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["plot", str(sweep), "--dpi", "0", "--out", str(out)])
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


def test_check_dpi_bounds_are_matplotlibs_and_check_snr_range_takes_finite_ends():
    """check_dpi takes 1 dpi and a PNG of exactly 65535 pixels a side or 2^27 in all (one more
    pixel is refused; pixels counted as matplotlib does, truncated), refuses 0, a bool or a
    float, and --dpi for a vector file whatever the suffix's case; check_snr_range takes
    LO = HI and refuses infinite or NaN ends (the API: the CLI's --snr refuses them first)."""
    from semcom.eval.plot import DPI, MAX_AREA, MAX_PIXELS, check_dpi, check_snr_range

    assert (MAX_PIXELS, MAX_AREA) == (65535, 2**27)
    assert check_dpi(None, "f.svg", (7.0, 4.5)) == DPI and check_dpi(1, "f.png", (1, 1)) == 1
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ValueError, match="expected a positive integer"):
            check_dpi(bad, "f.png", (1.0, 1.0))
    with pytest.raises(ValueError, match=r"f\.PDF is a PDF, vector"):
        check_dpi(100, "f.PDF", (1.0, 1.0))
    assert check_dpi(100, "f.png", (655.35, 1.0)) == 100  # 65535 x 100
    # matplotlib truncates: 655.359 in at 100 dpi is 65535 pixels (was refused as 65536)
    assert check_dpi(100, "f.png", (655.359, 1.0)) == 100
    with pytest.raises(ValueError, match="65536 x 100 pixels"):
        check_dpi(100, "f.png", (655.36, 1.0))
    assert check_dpi(100, "f.png", (163.84, 81.92)) == 100  # 16384 x 8192 = 2^27
    with pytest.raises(ValueError, match="16384 x 8193 pixels"):
        check_dpi(100, "f.png", (163.84, 81.93))
    assert check_snr_range(None) is None and check_snr_range((3, 3)) == (3.0, 3.0)
    for bad in ((-math.inf, 5.0), (0.0, math.inf), (math.nan, 5.0), (1.0,)):
        with pytest.raises(ValueError, match="two finite numbers of dB"):
            check_snr_range(bad)


def test_anchor_image_warnings_compare_with_the_results_data_sets_only():
    """One warning per anchor file measured on a data set none of the results used; none
    when there are no results to compare with (nothing to mislead)."""
    from semcom.eval.plot import anchor_image_warnings

    kodak, cifar = {"dataset": {"name": "kodak"}}, {"dataset": {"name": "cifar10-test"}}
    said = anchor_image_warnings([("r.json", kodak)], [("a.json", kodak), ("b.json", cifar)])
    assert said == ["anchor b.json was measured on cifar10-test, the results on kodak: not the "
                    "same images"]  # fmt: skip
    assert anchor_image_warnings([], [("b.json", cifar)]) == []


# ------------------------------------------------------------------------- odd files
def test_merge_of_files_without_a_dataset_block_can_be_read_back(tmp_path, capsys):
    """A hand-written file without 'dataset' merged into 'dataset': null, which every reader
    then refused ("'dataset' is None, not an object")."""
    a = _write(tmp_path / "a.json", {"runs": [{"scheme": "a", "snr_db": [0], "psnr": [20.0]}]})
    b = _write(tmp_path / "b.json", {"runs": [{"scheme": "b", "snr_db": [0], "psnr": [21.0]}]})
    m = tmp_path / "m.json"
    assert main(["merge", str(a), str(b), "--out", str(m)]) == 0
    capsys.readouterr()
    assert "dataset" not in json.loads(m.read_text())
    assert _table(capsys, m)[2:] == ["| a |  | psnr | 20.00 |", "| b |  | psnr | 21.00 |"]


def test_plot_from_python_keeps_the_callers_backend_and_figures(sweep, tmp_path):
    """``plot_results`` in a notebook: the process's backend (there the inline one; here
    ``svg``, another non-interactive one) and the caller's pyplot figures stay as they were
    (``matplotlib.use("Agg")`` switched the backend, so the notebook's figures showed no
    more); the file is written all the same."""
    import matplotlib
    import matplotlib.pyplot as plt

    from semcom.eval.plot import plot_results

    before = matplotlib.get_backend()
    try:
        matplotlib.use("svg")
        mine = plt.figure()
        out = plot_results([sweep], ["psnr", "lpips"], out=tmp_path / "f.png")
        assert out.read_bytes().startswith(b"\x89PNG")
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == [mine.number]
    finally:
        plt.close("all")
        matplotlib.use(before)


def test_plot_legend_below_fits_the_figure(tmp_path, monkeypatch):
    """Three panels and many long labels: the legend below takes fewer columns (more rows)
    until it fits (in 9 columns it ran past both edges of the figure)."""
    runs = [{"scheme": f"a-rather-long-scheme-name-{i}", "cbr": 1 / 16, "snr_db": [0.0, 5.0],
             "psnr": [20.0 + i, 25.0], "ms_ssim": [0.5, 0.6], "lpips": [0.4, 0.3]}
            for i in range(12)]  # fmt: skip
    f = _write(tmp_path / "r.json", _doc(runs))
    figs = _figures(monkeypatch)
    assert main(["plot", str(f), "--metric", "psnr", "ms_ssim", "lpips",
                 "--out", str(tmp_path / "f.png")]) == 0  # fmt: skip
    (fig,) = figs
    fig.canvas.draw()
    box = fig.legends[0].get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width
    assert len(fig.legends[0].get_texts()) == 12
    import matplotlib.pyplot as plt

    plt.close("all")


def test_best_bias_is_the_nearest_to_zero_on_either_side():
    """--best of the SNR-estimate bias: +0.1 and -0.1 dB are equally good (both bold); only
    the first was, by row order."""
    from semcom.eval.table import TableRow, best_cells

    rows = [
        TableRow("f", "a", "1/16", "snr_est_bias_db", [0.1, 0.3], [None, None], 2),
        TableRow("f", "b", "1/16", "snr_est_bias_db", [-0.1, -0.2], [None, None], 2),
    ]
    assert best_cells(rows) == {(0, 0), (1, 0), (1, 1)}


def test_table_refuses_a_metric_no_run_has_and_names_runs_without_one(sweep, capsys):
    """A metric no run holds: an error naming it (not an empty table); one some runs lack: the
    table of the others, with a warning naming each run left out."""
    assert main(["table", str(sweep), "--metrics", "psnr", "dists"]) == 2
    assert "no run in the given files has metric 'dists'" in capsys.readouterr().err
    from semcom.eval.table import table_rows

    with pytest.warns(UserWarning) as caught:
        _, rows = table_rows([sweep], ["lpips"])
    assert [r.scheme for r in rows] == ["x", "x+dm"]
    said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert said == [f"no 'lpips' in {sweep}: run 2 (old): left out of the table"]


@pytest.mark.parametrize(
    ("metric", "higher_is_better"),
    [("psnr", True), ("ssim", True), ("ms_ssim", True), ("lpips", False), ("lpips_vgg", False),
     ("dists", False), ("snr_est_rmse_db", False)],
)  # fmt: skip
def test_best_follows_each_metrics_direction(metric, higher_is_better):
    """--best bolds the highest value of a score and the lowest of a distance or error, for
    every metric the table knows."""
    from semcom.eval.table import SCORE, TableRow, best_cells

    rows = [TableRow("f", s, "1/16", metric, [v], [None], 3) for s, v in (("a", 0.2), ("b", 0.4))]
    assert best_cells(rows) == {(1 if higher_is_better else 0, 0)}
    assert set(SCORE) == {"psnr", "ssim", "ms_ssim", "lpips", "lpips_vgg", "dists",
                          "snr_est_rmse_db", "snr_est_bias_db"}  # fmt: skip


def test_table_prints_infinite_values_with_their_sign(tmp_path, capsys):
    """An infinite mean (the PSNR of a lossless image) reads ``inf`` (LaTeX ``\\infty``), a
    negative one ``-inf``, in every format."""
    run = {"scheme": "a", "cbr": None, "snr_db": [0.0, 10.0], "snr_est_bias_db": [-math.inf, 1.0],
           "psnr": [20.0, math.inf]}  # fmt: skip
    f = _write(tmp_path / "r.json", _doc([run]))
    md = _table(capsys, f, "--metrics", "psnr", "snr_est_bias_db")
    assert md[2:] == ["| a |  | psnr | 20.00 | inf |", "| a |  | snr_est_bias_db | -inf | 1.00 |"]
    tex = _table(capsys, f, "--metrics", "psnr", "snr_est_bias_db", "--format", "latex")
    assert tex[4].endswith(r"& $20.00$ & $\infty$ \\") and r"& $-\infty$ & $1.00$" in tex[5]


def test_table_of_several_files_leads_with_the_file_and_refuses_unknown_formats(sweep, capsys):
    """Rows from several files are led by their file's name; an unknown format is refused
    (it printed LaTeX)."""
    from semcom.eval.table import results_table

    other = _write(sweep.with_name("o.json"), _doc([_run("y", X)]))
    lines = _table(capsys, sweep, other)
    assert lines[0].startswith("| file | scheme | CBR | metric |")
    assert "| o.json | y | 1/16 | psnr | - | 24.33 | 31.00 |" in lines
    with pytest.raises(ValueError, match="unknown table format 'html'"):
        results_table([sweep], fmt="html")


def test_files_of_one_name_are_told_apart_by_their_folders(tmp_path, capsys, monkeypatch):
    """Two results files of one name (two runs' r.json; results and anchors of one data set)
    are led by as much of their path as tells them apart, in every format; other files by
    their name as before. One file given twice keeps one name."""
    for sub in ("a/run", "b/run", "anchors"):
        (tmp_path / sub).mkdir(parents=True)
    one = _write(tmp_path / "a/run/r.json", _doc([_run("x", X)]))
    two = _write(tmp_path / "b/run/r.json", _doc([_run("y", X)]))
    other = _write(tmp_path / "o.json", _doc([_run("z", X)]))
    published = _anchor(tmp_path / "anchors/r.json")
    lines = _table(capsys, one, two, other, "--anchors", published, "--snr", "10")
    assert [ln.split(" | ")[0] for ln in lines[2:]] == [
        "| a/run/r.json", "| b/run/r.json", "| o.json", "| anchors/r.json", "| anchors/r.json"
    ]  # fmt: skip
    text = "\n".join(_table(capsys, one, two, "--format", "csv"))
    assert [row[0] for row in csv.reader(io.StringIO(text))] == ["file", "a/run/r.json",
                                                                 "b/run/r.json"]  # fmt: skip
    tex = _table(capsys, one, two, "--format", "latex")
    assert any(ln.startswith("a/run/r.json & x") for ln in tex), tex
    # relative paths as given, one file twice, a name that is also a folder's end
    from semcom.eval.table import file_labels

    monkeypatch.chdir(tmp_path / "a")
    assert file_labels(["run/r.json", "../b/run/r.json", str(one)]) == {
        "run/r.json": "a/run/r.json", "../b/run/r.json": "b/run/r.json", str(one): "a/run/r.json"
    }  # fmt: skip
    assert file_labels(["r.json", "../r.json", "o.json"]) == {
        "r.json": "a/r.json", "../r.json": f"{tmp_path.name}/r.json", "o.json": "o.json"
    }  # fmt: skip
    # a TableRow built in Python with a Path for its file (the CLI passes str)
    from semcom.eval.table import TableRow, render_table

    rows = [TableRow(Path(f), "x", "1/16", "psnr", [20.0], [None], 2) for f in (one, two)]
    for fmt in ("markdown", "csv"):
        out = render_table([10.0], rows, fmt=fmt, file_column=True)
        assert "a/run/r.json" in out and "b/run/r.json" in out


def test_results_files_after_anchors_are_said_to_go_first(capsys, tmp_path):
    """``--anchors`` takes every file after it: ``table --anchors A R`` / ``plot --anchors A R``
    said only 'the following arguments are required: results'; now the error says to give the
    results files before --anchors (and no figure or table is written)."""
    root = Path(__file__).resolve().parents[1] / "results"
    anchors, res = root / "anchors" / "kodak-awgn.json", root / "kodak-awgn.json"
    out = tmp_path / "f.png"
    for argv in (["table", "--anchors", str(anchors), str(res)],
                 ["plot", "--anchors", str(anchors), str(res), "--out", str(out)]):  # fmt: skip
        assert main(argv) == 2
        assert "give the results files before --anchors" in capsys.readouterr().err
    assert not out.exists()
    assert main(["table"]) == 2
    assert "no results files given (results JSON files" in capsys.readouterr().err
    assert main(["table", str(res), "--anchors", str(anchors), "--snr", "10"]) == 0
