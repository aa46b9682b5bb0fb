"""A third-party plugin registers a space, quantizer, task, hardware model and strategy
through entry points, and runs a study end to end from outside the package.

The plugin (tests/plugin/toy_plugin) is a package plus a dist-info folder with
``entry_points.txt``: what ``pip install`` leaves behind. Putting its folder on
PYTHONPATH makes it installed for importlib.metadata; bitnas's files are untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).parent / "toy_plugin"

SPEC = """
[study]
name = "toy"
trials = 6
seed = 0
strategy = "halton"

[space]
name = "toy_mlp"
hidden = [4, 8]
w_bits = [2, 4, 8]
quantizers = ["halfstep"]

[quantizers.halfstep]
levels_scale = 0.9

[task]
name = "toy_blobs"
epochs = 3

[hardware]
name = "toy_bitops"

[[objectives]]
name = "accuracy"

[[objectives]]
name = "bitops"

[constraints]
accuracy = { min = 0.3 }
"""


def _run(*args: str, cwd: Path, plugin_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "bitnas", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def test_plugin_entries_are_listed_and_run_a_study(tmp_path):
    plugin_dir = tmp_path / "site"
    shutil.copytree(PLUGIN, plugin_dir)
    listed = _run("list", cwd=tmp_path, plugin_dir=plugin_dir)
    assert listed.returncode == 0, listed.stderr
    for name in ("toy_mlp", "halfstep", "toy_blobs", "toy_bitops", "halton"):
        line = next(ln for ln in listed.stdout.splitlines() if ln.strip().startswith(name))
        assert "[plugin toyplugin]" in line

    (tmp_path / "toy.toml").write_text(SPEC)
    run = _run("search", "toy.toml", "--out", "out", cwd=tmp_path, plugin_dir=plugin_dir)
    assert run.returncode == 0, run.stderr
    records = json.loads((tmp_path / "out" / "pareto.json").read_text())
    assert records, "the plugin study has a front"
    for r in records:
        assert r["cost"]["bitops"] == r["values"]["bitops"] > 0  # the plugin's extra cost field
        assert {lq["quantizer"] for lq in r["plan"].values()} == {"halfstep"}
        assert all(lq["options"] == {"levels_scale": 0.9} for lq in r["plan"].values())
        assert r["metrics"]["accuracy"] >= 0.3  # the metric floor held
    assert "halton" in run.stderr  # the plugin's strategy proposed the trials


def test_plugin_hardware_refuses_bits_it_cannot_run(tmp_path):
    plugin_dir = tmp_path / "site"
    shutil.copytree(PLUGIN, plugin_dir)
    (tmp_path / "toy.toml").write_text(SPEC.replace("w_bits = [2, 4, 8]", "w_bits = [3, 4]"))
    run = _run("search", "toy.toml", "--out", "out", cwd=tmp_path, plugin_dir=plugin_dir)
    assert run.returncode == 2
    err = run.stderr.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "toy_bitops runs 2, 4, 8-bit weights" in err and "[3]" in err and "fc0" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_broken_plugin_is_one_line(tmp_path):
    plugin_dir = tmp_path / "site"
    shutil.copytree(PLUGIN, plugin_dir)
    eps = plugin_dir / "toyplugin-0.1.dist-info" / "entry_points.txt"
    eps.write_text(eps.read_text().replace("toyplugin:MLPSpace", "toyplugin:NoSuchSpace"))
    run = _run("list", cwd=tmp_path, plugin_dir=plugin_dir)
    assert run.returncode == 2
    assert "plugin toyplugin" in run.stderr and "NoSuchSpace" in run.stderr
    assert "Traceback" not in run.stderr
