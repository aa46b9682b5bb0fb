"""The shape of a reproduced paper experiment (``bitnas reproduce NAME``).

An experiment is one module plus one registration: an object that satisfies
:class:`Experiment`, registered in ``EXPERIMENTS`` (``EXPERIMENTS.register(name)``
on it, or an entry point in group ``bitnas.experiments`` for a plugin). Its
``run`` writes ``report.md`` and ``report.json`` into the run directory and
returns the report; ``format_report`` turns a report into the text printed
after the run. The report sets bitnas's measured figures beside the paper's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bitnas.spec import StudySpec, load_spec

Log = Callable[[str], None]


@runtime_checkable
class Experiment(Protocol):
    """A reproduced paper experiment."""

    #: the registered name; the default run directory is runs/<name>[_quick]
    name: str
    #: one line for ``bitnas list``
    description: str
    #: whether ``--quick`` (a reduced run of the same pipeline, minutes) is offered; the
    #: contract suite runs every experiment's quick variant
    has_quick: bool

    def run(self, out_dir: Path, *, quick: bool = False, trials: int | None = None,
            storage_url: str | None = None, log: Log = print) -> dict[str, Any]:
        """Run (or resume) the experiment; write report.md and report.json into ``out_dir``."""
        ...

    def format_report(self, report: dict[str, Any]) -> str:
        """The report as text (what report.md holds)."""
        ...


def load_experiment_spec(spec_file: Path, quick_changes: Mapping[str, Mapping[str, Any]], *,
                         quick: bool = False, trials: int | None = None) -> StudySpec:
    """An experiment's bundled spec; for ``--quick``, each section updated with its entries in
    ``quick_changes``; ``trials`` overrides [study] trials."""
    spec = load_spec(spec_file)
    if quick:
        raw = spec.to_dict()
        for section, changes in quick_changes.items():
            raw[section] = {**raw[section], **changes}
        spec = StudySpec.from_dict(raw)
    return spec.replace(trials=trials)


def spec_variant(spec: StudySpec, name: str, space: Mapping[str, Any] | None = None,
                 task: Mapping[str, Any] | None = None) -> StudySpec:
    """``spec`` renamed to study ``name``, with ``space`` and ``task`` entries changed (validated
    again): one study of an experiment's several."""
    raw = spec.to_dict()
    raw["study"] = {**raw["study"], "name": name}
    raw["space"] = {**raw["space"], **(space or {})}
    raw["task"] = {**raw["task"], **(task or {})}
    return StudySpec.from_dict(raw)


class ModuleExperiment:
    """An :class:`Experiment` made of a module's ``NAME``, ``run`` and ``format_report``."""

    def __init__(self, name: str, description: str, run: Callable[..., dict[str, Any]],
                 format_report: Callable[[dict[str, Any]], str], has_quick: bool = True) -> None:
        self.name = name
        self.description = description
        self.has_quick = has_quick
        self._run = run
        self._format = format_report

    def run(self, out_dir: Path, *, quick: bool = False, trials: int | None = None,
            storage_url: str | None = None, log: Log = print) -> dict[str, Any]:
        return self._run(out_dir, quick=quick, trials=trials, storage_url=storage_url, log=log)

    def format_report(self, report: dict[str, Any]) -> str:
        return self._format(report)
