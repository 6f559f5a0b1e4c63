"""The docs' method table is the registry's: docs/methods.md holds, between its two markers, exactly what
``kdsuite methods --format md`` prints, so a new plugin file (with its display name on the class) is the
only place a method is named."""
import re
import subprocess
import sys
from pathlib import Path

from kdsuite.methods.registry import list_methods, method_display_name, methods_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "methods.md"


def _block() -> str:
    m = re.search(r"<!-- methods-table:[^\n]*-->\n(.*?)<!-- /methods-table -->", DOC.read_text(), re.S)
    assert m, "docs/methods.md lost its methods-table markers"
    return m.group(1)


def test_docs_table_is_the_generated_one():
    assert _block() == methods_markdown(), ("docs/methods.md's method table differs from the registry: "
                                            "paste `kdsuite methods --format md` between its markers")


def test_every_built_in_method_is_a_row_with_its_display_name():
    block = _block()
    built_in = [m for m in list_methods() if m.__module__.startswith("kdsuite.methods.plugins.")]
    assert len(built_in) >= 40
    for m in built_in:
        assert f"| {m.display_name} | `{m.name}` |" in block, m.name


def test_the_cli_prints_the_table():
    out = subprocess.run([sys.executable, "-m", "kdsuite.cli", "methods", "--format", "md"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout == methods_markdown()
    assert method_display_name("kd") == "KD"
