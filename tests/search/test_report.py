"""``bitnas report``: one self-contained HTML page per study, written by ``bitnas search``
too. One tiny three-objective run (module-scoped) feeds every check."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tomllib
from html.parser import HTMLParser
from itertools import combinations

import pytest

from bitnas.cli import main
from bitnas.search import report as report_mod
from bitnas.search.hypervolume import knee
from bitnas.search.pareto import front_trials, member_record
from bitnas.search.report import scheme_letters, spec_text
from bitnas.search.storage import run_dir_url
from bitnas.search.study import open_study, run_search, summary
from bitnas.spec import load_spec
from tests.conftest import reports_on, write_spec
from tests.e2e.test_cli_errors import _one_line_error

PNG = b"\x89PNG\r\n\x1a\n"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Five trials, three objectives (three pairs), a weight budget one candidate breaks
    (seed 0: a front of two, two dominated, one infeasible)."""
    tmp = tmp_path_factory.mktemp("report")
    extra = '\n[[objectives]]\nname = "latency_s"\nreference = 1.0\n'
    spec = load_spec(write_spec(tmp / "tiny.toml", trials=5, epochs=1, weight_bytes=1500, extra=extra))
    with reports_on():
        result = run_search(spec, tmp / "run", log=lambda m: None)
    return tmp / "run", result, spec


@pytest.fixture(autouse=True)
def _reports(monkeypatch):
    """The suite skips the end-of-search report (tests/conftest.py); this file tests it."""
    monkeypatch.delenv("BITNAS_NO_REPORT", raising=False)


class _Structure(HTMLParser):
    """Every start and end tag, checked for balance; ids, tables and images collected."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.seen: set[str] = set()
        self.ids: list[str] = []
        self.imgs: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.seen.add(tag)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "table":
            self.tables += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def _parse(text: str) -> _Structure:
    p = _Structure()
    p.feed(text)
    p.close()
    return p


def _expected_figures(result, spec) -> int:
    pairs = len(list(combinations(spec.objectives, 2)))
    front = 2 if front_trials(result.study) else 0  # the bits heatmap and the per-layer bars
    return pairs + 1 + front  # + the hypervolume history


def test_search_writes_the_report_beside_the_front(run):
    out, result, spec = run
    assert result.report == out / "report.html" and result.report.is_file()
    for name in ("pareto.json", "pareto.csv", "pareto.png"):
        assert (out / name).is_file()
    assert "pareto.png, report.html;" in summary(result, spec)


def test_html_parses_with_balanced_tags(run):
    out, result, _ = run
    p = _parse((out / "report.html").read_text(encoding="utf-8"))
    assert not p.problems, p.problems[:5]
    assert p.stack == [], f"unclosed: {p.stack}"
    assert {"html", "head", "body", "title", "table", "pre"} <= p.seen
    assert p.tables >= 2  # the front members, the timing split
    # self-contained: no script, no stylesheet or image fetched from anywhere
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in text and "<link" not in text
    assert not re.search(r'(src|href)="(https?:)?//', text)


def test_every_figure_is_an_embedded_png(run):
    out, result, spec = run
    imgs = _parse((out / "report.html").read_text(encoding="utf-8")).imgs
    assert len(imgs) == _expected_figures(result, spec) == 3 + 1 + 2
    for src in imgs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        data = base64.b64decode(src.partition(",")[2], validate=True)
        assert data[:8] == PNG and len(data) > 1000


def test_every_front_member_is_a_row_with_its_commands(run):
    out, result, spec = run
    text = (out / "report.html").read_text(encoding="utf-8")
    p = _parse(text)
    front = [t.number for t in front_trials(result.study)]
    assert front
    for n in front:
        assert f"trial-{n}" in p.ids
        assert f"bitnas rebuild {out} --trial {n}" in text
        assert re.search(rf"bitnas export {re.escape(str(out))} --trial {n} --format \w+", text)
    # the knee is named, linked and marked
    records = [member_record(t, spec.objectives) for t in front_trials(result.study)]
    k = knee(records, spec.objectives)["trial"]
    assert f'Knee: <a href="#trial-{k}">trial {k}</a>' in text
    assert f'<tr id="trial-{k}" class="knee">' in text
    # trials of every kind are counted (the scatters draw them apart)
    pruned = sum(1 for t in result.study.trials if t.state.name == "PRUNED")
    assert pruned and f"; {len(result.study.trials) - pruned} feasible, {pruned} infeasible by cost" in text
    # the spec and the timing split are there
    assert "[[objectives]]" in text and "workload_s" in text and "eval_s" in text


def test_cli_report_default_path_and_out(run, tmp_path, capsys):
    out, result, spec = run
    target = tmp_path / "r.html"
    assert main(["report", str(out), "--out", str(target)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {target}"
    assert len(_parse(target.read_text(encoding="utf-8")).imgs) == _expected_figures(result, spec)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("fp_cache"))
    (copy / "report.html").unlink()
    assert main(["report", str(copy)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {copy / 'report.html'}"
    assert (copy / "report.html").is_file()


def test_spec_is_shown_as_toml_that_reads_back(run):
    _, _, spec = run
    lang, text = spec_text(spec)
    assert lang == "toml"
    assert tomllib.loads(text) == spec.to_dict(include_storage=False)


def test_scheme_letters_are_unique_prefixes():
    assert scheme_letters(["uniform", "pot", "codebook", "series", "nonuniform"]) == {
        "uniform": "u", "pot": "p", "codebook": "c", "series": "s", "nonuniform": "n"}
    assert scheme_letters(["uniform", "unary", "pot"]) == {"uniform": "uni", "unary": "una", "pot": "p"}


def test_a_failed_report_keeps_the_front(run, tmp_path, monkeypatch, capsys):
    out, result, spec = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    before = {n: (copy / n).read_bytes() for n in ("pareto.json", "pareto.csv", "pareto.png", "report.html")}

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(report_mod, "build_report", boom)
    again = run_search(spec, copy, log=lambda m: None)  # nothing left to run: exports again
    assert again.report is None
    err = capsys.readouterr().err
    assert "warning: could not write" in err and "disk on fire" in err and "Traceback" not in err
    for n in ("pareto.json", "pareto.csv", "pareto.png"):
        assert (copy / n).is_file()
    assert (copy / "report.html").read_bytes() == before["report.html"]  # the old one, whole
    assert "pareto.png; storage" in summary(again, spec)


def test_bad_input_is_one_line(tmp_path, capsys):
    _one_line_error(capsys, ["report", str(tmp_path / "missing")], "neither a run directory")
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["report", str(tmp_path / "empty")], "has no study.log")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "study.log").write_text("this is not a journal\n")
    _one_line_error(capsys, ["report", str(foreign)], "is not an Optuna journal")
    # a study with no finished trial yet
    spec = load_spec(write_spec(tmp_path / "tiny.toml", trials=2, epochs=1))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    open_study(spec, run_dir_url(fresh))
    _one_line_error(capsys, ["report", str(fresh)], "has no finished trial yet")
    assert not (fresh / "report.html").exists()


def test_a_trial_this_bitnas_cannot_read_is_one_line(run, tmp_path, capsys):
    out, _, _ = run
    copy = tmp_path / "run"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("fp_cache"))
    log = copy / "study.log"
    log.write_text(log.read_text().replace('"per_layer":', '"per_layers":', 1))  # one trial's cost
    _one_line_error(capsys, ["report", str(copy), "--out", str(tmp_path / "r.html")],
                    "holds a cost this bitnas cannot read")
    assert not (tmp_path / "r.html").exists()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_chromium_renders_the_report(run, tmp_path):
    """Where a headless Chromium is installed, the page renders non-blank with no console
    errors (it has no script, so any console message is a fault)."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no headless Chromium on PATH (chromium, chromium-browser, google-chrome); "
                    "install one, e.g. `apt-get install chromium`, to run this check")
    import numpy as np
    from PIL import Image

    out, _, _ = run
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         f"--screenshot={shot}", "--window-size=1280,2000", (out / "report.html").resolve().as_uri()],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert shot.is_file(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines()
               if "Uncaught" in line or "CONSOLE" in line or "net::ERR" in line]
    assert not console, console
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        assert rgb.size == (1280, 2000)
        small = rgb.resize((320, 500))
        colours = small.getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 16  # text, figures: many colours
        non_white = float((np.asarray(small).min(axis=2) < 235).mean())
        assert non_white > 0.03, f"only {non_white:.1%} of the page is not white"


def test_each_space_s_export_commands_name_a_format_that_takes_it():
    from bitnas.search.report import export_format

    assert export_format("cnn") == "onnx" and export_format("tiny_transformer") == "onnx"
    assert export_format("spiking_cnn") == "nir" and export_format("ai8x") == "ai8x"
    # spike-times-spike attention has no NIR primitive, and onnx has no neurons
    assert export_format("spikformer") == "torch" and export_format("spike_driven_transformer") == "torch"
    assert export_format("recall_transformer") == "torch"
