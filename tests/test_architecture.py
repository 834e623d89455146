"""The layering is declared in pyproject.toml ([tool.importlinter]) and holds: layers import downward
only, the stage contract imports no stage, and no layer's modules import each other in a circle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str | None:
    local = Path(sys.executable).with_name(name)
    return str(local) if local.exists() else shutil.which(name)


@pytest.mark.skipif(_tool("lint-imports") is None, reason="import-linter not installed: pip install -e '.[dev]'")
def test_import_contracts_hold():
    proc = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.skipif(_tool("ruff") is None, reason="ruff not installed: pip install -e '.[dev]'")
@pytest.mark.parametrize(
    "args", [["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]], ids=["lint", "format"]
)
def test_ruff_is_clean(args):
    """pyproject.toml [tool.ruff]: line length 120 and the configured rules hold over the whole tree."""
    proc = subprocess.run([_tool("ruff"), *args], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


PRIVATE_TOP_LEVEL = ("_pytest", "xdist")  # pytest's internals; xdist has no public Python API the harness needs


def _imports(path: Path) -> list[tuple[int, str]]:
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module))
    return out


def test_the_harness_uses_no_private_pytest_or_xdist_api():
    """harness/ talks to pytest through its public API (`pytest.*`, hooks) only: no `_pytest.*`
    module, no xdist module, and no reaching for xdist's plugin objects by class name."""
    bad = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        rel = path.relative_to(REPO)
        bad += [
            f"{rel}:{line}: import {name}" for line, name in _imports(path) if name.split(".")[0] in PRIVATE_TOP_LEVEL
        ]
        bad += [f"{rel}: names WorkerInteractor" for _ in [0] if "WorkerInteractor" in path.read_text()]
    assert not bad, "\n".join(bad)


def test_the_private_api_test_sees_an_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from _pytest.runner import runtestprotocol\n    import xdist.remote\n")
    assert [name for _, name in _imports(probe)] == ["_pytest.runner", "xdist.remote"]
