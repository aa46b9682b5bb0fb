"""A search on the max78000: its limits prune trials before training, saying why; export.

The CLI runs in this process (``main``), to spare an interpreter start per command."""

from types import SimpleNamespace

from bitnas.cli import main


def run_bitnas(*args, capsys):
    code = main(list(args))
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

SPEC = """
[study]
name = "ai8x"
trials = {trials}
seed = 0
sampler = "random"

[space]
name = "ai8x"
depth = [2]
widths = {widths}
dex_channels = [3, 18]
input_size = 4
pools = [0]

[task]
name = "digits"
epochs = 1

[hardware]
name = "max78000"

[[objectives]]
name = "accuracy"

[[objectives]]
name = "latency_s"
"""


def test_trials_over_the_chip_s_kernel_memory_are_pruned_with_the_reason(tmp_path, capsys):
    # 8 -> 1024 channels 3x3: 16 output passes of 64 kernels = 1,024 words a processor > 768
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(trials=6, widths="[8, 1024]"))
    r = run_bitnas("search", str(spec), "--out", str(tmp_path / "run"), capsys=capsys)
    assert r.returncode == 0, r.stderr
    log = r.stdout + r.stderr  # progress lines on stderr, the front on stdout
    assert "infeasible (layer conv1: 1024 kernel words a processor (8-bit 3x3, 1 pass)" in log
    assert "processor 0 holds 768" in log
    assert "1024 biases do not fit in one quadrant's 512 bytes of bias memory" in log
    assert "wrote" in log and "pareto.json" in log
    # an infeasible trial cannot be exported; an unknown format is named
    r = run_bitnas("export", str(tmp_path / "run"), "--trial", "0", "--format", "ai8x", capsys=capsys)
    assert r.returncode == 2 and "is infeasible (layer conv" in r.stderr and "Traceback" not in r.stderr
    r = run_bitnas("export", str(tmp_path / "run"), "--trial", "0", "--format", "onyx", capsys=capsys)
    assert r.returncode == 2 and "unknown export format" in r.stderr and "ai8x" in r.stderr


def test_a_front_member_exports_to_ai8x_files(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(trials=2, widths="[8]"))
    assert run_bitnas("search", str(spec), "--out", str(tmp_path / "run"), capsys=capsys).returncode == 0
    r = run_bitnas("export", str(tmp_path / "run"), "--trial", "1", "--format", "ai8x",
                   "--out", str(tmp_path / "x"), capsys=capsys)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x" / "trial1.pth.tar").is_file() and (tmp_path / "x" / "trial1.yaml").is_file()


def test_a_space_that_cannot_fit_is_refused_in_one_line(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.format(trials=2, widths="[1024]"))
    r = run_bitnas("search", str(spec), "--out", str(tmp_path / "run"), capsys=capsys)
    assert r.returncode == 2
    line = r.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "no candidate fits hardware 'max78000'" in line and "kernel words a processor" in line
