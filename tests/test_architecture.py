"""The package's shape: one ``kdsuite.*`` namespace, layers that import only downwards (import-linter's
contracts in pyproject.toml, checked on a real install), plugins that never import each other, and
third-party plugins that cannot take the suite down."""
import ast
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _install(src: Path, target: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def _lint(target: Path, config: Path, cwd: Path):
    return subprocess.run([str(LINT), str(config)], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory):
    """A copy of the source tree (what a wheel is built from), to install and to break on purpose."""
    dst = tmp_path_factory.mktemp("src") / "kdsuite"
    # symlinks=True: kdsuite/<layer> are links to the top-level folders; copied as links the copy stays one tree
    shutil.copytree(ROOT, dst, symlinks=True, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "wandb", "*.egg-info",
                                                             "__pycache__", "build", "tests", "benchmarks"))
    return dst


def test_layers_hold_on_the_installed_package_and_a_back_edge_breaks_them(source_copy, tmp_path):
    good = tmp_path / "good"
    _install(source_copy, good)
    out = _lint(good, source_copy / "pyproject.toml", tmp_path)
    assert out.returncode == 0 and "0 broken" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]
    # the same check must fail when a lower layer imports a higher one (zoo -> engine)
    taps = source_copy / "zoo" / "taps.py"
    text = taps.read_text()
    try:
        taps.write_text(text + "\nfrom kdsuite.engine import trainer as _back_edge  # noqa\n")
        bad = tmp_path / "bad"
        _install(source_copy, bad)
        out = _lint(bad, source_copy / "pyproject.toml", tmp_path)
    finally:
        taps.write_text(text)
    assert out.returncode != 0 and "BROKEN" in out.stdout, out.stdout[-3000:]
    assert "kdsuite.zoo.taps -> kdsuite.engine.trainer" in out.stdout


def test_no_plugin_imports_another_plugin():
    plugins = {p.stem for p in (ROOT / "methods" / "plugins").glob("*.py") if p.stem != "__init__"}
    assert len(plugins) >= 30
    offences = []
    for name in sorted(plugins):
        tree = ast.parse((ROOT / "methods" / "plugins" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            for m in mods:
                if m.startswith("kdsuite.methods.plugins.") and m.split(".")[3] in plugins - {name}:
                    offences.append(f"{name} imports {m}")
    assert not offences, offences


def test_only_the_namespace_is_importable_from_any_folder(tmp_path):
    code = textwrap.dedent("""
        import importlib, sys
        import kdsuite.methods, kdsuite.engine.trainer, kdsuite.core.records
        for top in ("methods", "zoo", "experiments", "analysis", "slurm", "engine", "core"):
            try:
                importlib.import_module(top)
            except ImportError:
                continue
            sys.exit(f"import {top} worked")
    """)
    for cwd in (tmp_path, ROOT):  # the checkout's root too: its folders refuse to be imported bare
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=600)
        assert out.returncode == 0, (cwd, out.stdout, out.stderr[-2000:])


def test_a_broken_plugin_is_skipped_with_its_entry_point_named(tmp_path):
    site = tmp_path / "site"
    (site / "broken_kd").mkdir(parents=True)
    (site / "broken_kd" / "__init__.py").write_text("import not_a_real_dependency_xyz\n")
    dist = site / "broken_kd-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-kd\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text("[kdsuite.methods]\nbroken = broken_kd\n")
    code = ("import sys; sys.path.insert(0, %r); from kdsuite.cli import main; sys.exit(main(['methods']))"
            % str(site))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "kd " in out.stdout and "dkd" in out.stdout  # the built-in methods are all still there
    assert "broken plugin (skipped): broken = broken_kd [broken-kd]" in out.stdout
    assert "No module named 'not_a_real_dependency_xyz'" in out.stdout
    assert "skipped method plugin entry point 'broken'" in out.stderr and "Traceback" not in out.stderr
