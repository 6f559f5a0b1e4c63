"""The generated LaTeX tables compile with pdflatex in a one-column and a two-column article without an
overfull box, an error or a glyph the font lacks. Skipped only where pdflatex is absent (`make latex-install`
installs Debian's texlive-latex-base and texlive-latex-recommended; `make test` runs it)."""
import re
import shutil
import subprocess

import pytest

from kdsuite.analysis.cli_table import render_table
from tests.test_tables import _rec

pytestmark = pytest.mark.skipif(shutil.which("pdflatex") is None,
                                reason="pdflatex is not installed (make latex-install: Debian's texlive-latex-base "
                                       "and texlive-latex-recommended)")

PAIRS = [("cifar_resnet56", "cifar_resnet20"), ("cifar_wrn_40_2", "cifar_wrn_16_2"),
         ("cifar_resnet32x4", "cifar_resnet8x4"), ("cifar_vgg13", "cifar_vgg8")]
METHODS = ["vanilla", "kd", "dkd", "fitnet_1stage", "at", "crd", "dml", "cskd"]


def _records():
    """A RepDistiller-sized table: 4 pairs, 8 methods of 4 categories, 2–3 seeds, a kd temperature sweep."""
    out = []
    for p, (t, s) in enumerate(PAIRS):
        for m, method in enumerate(METHODS):
            for seed in range(2 + (m % 2)):
                r = _rec(method, seed, 60.0 + p + m - 0.7 * seed, student=s, teachers=(t,), dataset="cifar100")
                if method == "kd":
                    for T in (2, 4):
                        out.append(dict(r, variant={"T": T}, run_id=f"{r['run_id']}T{T}", config_hash=f"{p}{seed}{T}"))
                    continue
                out.append(r)
    return out


DOC = r"""\documentclass[%(opts)s]{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs,graphicx}
\tracinglostchars=2
\begin{document}
\typeout{KDSUITE-WIDTHS \the\columnwidth\space\the\textwidth}
A paragraph of body text before the table, so that the page has a column of text to compare it with.
%(body)s
\end{document}
"""


def _compile(tmp_path, name, opts, body):
    (tmp_path / f"{name}.tex").write_text(DOC % {"opts": opts, "body": body})
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / f"{name}.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    return log


def _natural_overflow(log):
    return [float(x) for x in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]


@pytest.mark.parametrize("layout", ["methods", "categories"])
@pytest.mark.parametrize("columns", ["one", "two"])
def test_tables_compile_without_overfull_boxes(tmp_path, layout, columns):
    recs = _records()
    ref = "repdistiller" if layout == "methods" else None
    tex = render_table(recs, layout, "latex", "last", reference=ref)
    if columns == "two" and layout == "methods":
        tex = tex.replace(r"\begin{table}", r"\begin{table*}").replace(r"\end{table}", r"\end{table*}")
    opts = "twocolumn" if columns == "two" else ""
    log = _compile(tmp_path, "t", opts, tex)
    assert "Overfull \\hbox" not in log, re.findall(r"Overfull \\hbox.*", log)
    assert "Missing character" not in log, re.findall(r"Missing character.*", log)
    assert "LaTeX Warning: Reference" not in log
    # how much the table is shrunk to fit: compiled again without the \resizebox (its natural width)
    bare = re.sub(r"\\resizebox\{.*\}\{!\}\{%\n", "", tex).replace("\\end{tabular}}", "\\end{tabular}")
    bare_log = _compile(tmp_path, "bare", opts, bare)
    over = _natural_overflow(bare_log)
    column, text = (float(x) for x in re.search(r"KDSUITE-WIDTHS ([\d.]+)pt ([\d.]+)pt", bare_log).groups())
    width = text if r"\begin{table*}" in tex else column  # the float's \linewidth
    natural = width + (max(over) if over else 0.0)  # a table that fits is reported at most as wide as the line
    print(f"{layout}, {columns}-column: natural width {natural:.0f} pt, line width {width:.0f} pt, "
          f"scale {min(1.0, width / natural):.2f}")
    if columns == "two" and layout == "methods":
        pdftoppm = shutil.which("pdftoppm")
        if pdftoppm:
            subprocess.run([pdftoppm, "-png", "-r", "80", "-f", "1", "-l", "1", "t.pdf", "page"], cwd=tmp_path,
                           check=True, timeout=60)
            assert list(tmp_path.glob("page*.png"))
