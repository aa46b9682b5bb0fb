"""The layering of DESIGN.md, enforced: import-linter's contracts (pyproject.toml) hold, and
``import bitnas`` stays light."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a dev dependency: pip install -c constraints.txt -e '.[dev]'"
    run = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_import_bitnas_does_not_import_torch_or_the_registries():
    code = ("import sys, bitnas, bitnas.spec, bitnas.registry; "
            "print(sorted(m for m in ('torch', 'optuna', 'bitnas.spaces', 'bitnas.search') "
            "if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
