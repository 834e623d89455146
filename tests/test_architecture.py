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
