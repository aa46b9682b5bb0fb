"""Everything one trial needs, built once per run from the spec: data, space, cost model, caches."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from bitnas.errors import BitnasError
from bitnas.evaluators import (
    FPModelCache,
    calibration_batches,
    ptq,
    train_fp,
)
from bitnas.hardware_models import Cost, LayerWorkload, extract_workload, measure_activity
from bitnas.plan import Candidate, QuantPlan
from bitnas.registry import HARDWARE, TASKS
from bitnas.spec import StudySpec, make_space

#: multi-fidelity: given the PTQ model's validation metrics and its measured cost,
#: whether to fine-tune it
Promote = Callable[[dict[str, float], Cost], bool]

#: validation samples whose spikes are counted for activity-based cost models
ACTIVITY_SAMPLES = 64


class SearchContext:
    """The task data, space, hardware model and FP cache of one study."""

    def __init__(self, spec: StudySpec, cache_dir: Path | None = None) -> None:
        self.spec = spec
        self.task = TASKS.create(spec.task["name"], **spec.task_options())
        self.data = self.task.load(spec.seed)
        self.space = make_space(spec.space["name"], self.task, spec.task["name"], **spec.space_kwargs())
        self.hardware = HARDWARE.create(spec.hardware["name"], **spec.hardware_options())
        self.evaluator = self.task.evaluator(self.data)
        self.train_cfg = spec.train
        self.calib = calibration_batches(
            self.data.train.x, self.train_cfg.calib_batches, self.train_cfg.batch_size, spec.seed
        )
        self.fp_cache = FPModelCache(cache_dir)
        self.activity_batch = self.data.val.x[:ACTIVITY_SAMPLES]
        self._structure: dict[str, tuple[dict[str, list[str]], list[LayerWorkload]]] = {}
        self._fp_metrics: dict[str, dict[str, float]] = {}
        self._teacher: tuple[nn.Module, dict[str, float]] | None = None

    def structure(self, cand: Candidate) -> tuple[dict[str, list[str]], list[LayerWorkload]]:
        """(layer groups, workload) of the candidate's architecture, from an untrained build."""
        key = cand.arch_key()
        if key not in self._structure:
            model = self.space.build(cand.arch_dict())
            groups = self.space.layer_groups(model)
            example = self.space.example_input()
            workload = extract_workload(model, example, groups, self.space.neuron_groups(model))
            self._structure[key] = (groups, workload)
        return self._structure[key]

    def cost(self, cand: Candidate, workload: list[LayerWorkload] | None = None) -> Cost:
        """The hardware cost, with the spec's bounds added as normalised violations.

        Without ``workload`` it is the static cost (no spikes measured yet).
        """
        if workload is None:
            _, workload = self.structure(cand)
        cost = self.hardware.cost(workload, cand.plan)
        violations = dict(cost.violations)
        for field, bound in self.spec.constraints.items():
            violations[field] = (cost.value(field) - bound) / bound
        return cost.with_violations(violations)

    def fp_model(self, cand: Candidate) -> tuple[nn.Module, float | None]:
        """The trained FP model of the candidate's arch; seconds spent training, None if cached."""
        arch = cand.arch_dict()
        identity = {
            "space": self.spec.space["name"],
            "space_options": self.spec.space_options(),  # e.g. the input encoding
            "arch": arch,
            "task": self.spec.task["name"],
            "task_options": self.spec.task_options(),
            "train": {k: getattr(self.train_cfg, k) for k in self.train_cfg.FP_FIELDS},
            "seed": self.spec.seed,
        }

        def build() -> nn.Module:
            torch.manual_seed(self.spec.seed)
            return self.space.build(arch)

        checkpoint = self.fp_cache.checkpoint_path(identity)  # a killed run resumes training
        return self.fp_cache.get(
            identity, build, lambda m: train_fp(m, self.data.train, self.train_cfg, self.spec.seed,
                                                checkpoint=checkpoint)
        )

    def quantized(self, cand: Candidate, plan: QuantPlan | None = None,
                  model: nn.Module | None = None) -> nn.Module:
        """The candidate's FP model (or ``model``), fake-quantized per its plan (or ``plan``)
        and calibrated."""
        if model is None:
            model, _ = self.fp_model(cand)
        groups, _ = self.structure(cand)
        return ptq(model, plan or cand.plan, groups, self.calib, self.space.neuron_groups(model))

    def prepared(self, cand: Candidate, *, promote: Promote | None = None, qat: bool | None = None
                 ) -> tuple[nn.Module, dict[str, float], float | None, Cost | None]:
        """(quantized model, its metrics, seconds of FP training or None if cached, the
        PTQ model's measured cost if ``promote`` measured it and no QAT changed the model).

        PTQ first; with ``task.qat`` the model is then fine-tuned (always, when PTQ lost
        more than ``qat_threshold``, or, for ``promote``, when ``promote(PTQ metrics,
        PTQ cost)`` says so; without a ``promote`` callback, as for the int8 reference,
        ``promote`` falls back to the ``when_broken`` rule), and the metrics are those
        after QAT, with the PTQ accuracy kept as ``ptq_accuracy``; ``qat`` records the
        decision (1 or 0). The argument ``qat`` overrides the decision (a rebuild repeats
        the one stored on the trial).
        """
        model, train_s = self.fp_model(cand)
        qmodel = self.quantized(cand, model=model)
        cfg = self.train_cfg
        if cfg.qat == "off" and qat is None:
            return qmodel, self.evaluator.evaluate(qmodel), train_s, None
        ptq = self.evaluator.evaluate(qmodel, splits=("val",))  # the test split only if final
        low_cost = None
        if qat is None:
            if cfg.qat == "always":
                qat = True
            elif cfg.qat == "promote" and promote is not None:
                low_cost = self.measured_cost(cand, qmodel)
                qat = promote(ptq, low_cost)
            else:  # when_broken, or promote with no front to compare with
                qat = self.fp_metrics(cand)["accuracy"] - ptq["accuracy"] > cfg.qat_threshold
        if qat:
            train_fp(qmodel, self.data.train, cfg, self.spec.seed, epochs=cfg.qat_epochs,
                     lr=cfg.qat_lr, teacher=self.teacher()[0] if cfg.kd else None)
            return qmodel, {**self.evaluator.evaluate(qmodel), "ptq_accuracy": ptq["accuracy"],
                            "qat": 1.0}, train_s, None
        metrics = {**ptq, **self.evaluator.evaluate(qmodel, splits=("test",)), "qat": 0.0}
        return qmodel, metrics, train_s, low_cost

    def measured_cost(self, cand: Candidate, model: nn.Module, hardware=None,
                      plan: QuantPlan | None = None) -> Cost:
        """The cost of ``model`` (the candidate's quantized model) on ``hardware`` (default:
        the study's), with spike rates measured on it when the hardware model charges them."""
        hardware = hardware or self.hardware
        _, workload = self.structure(cand)
        if hardware.needs_activity:
            workload = measure_activity(model, self.activity_batch, workload)
        if hardware is self.hardware and plan is None:
            return self.cost(cand, workload)
        return hardware.cost(workload, plan or cand.plan)

    def evaluate(self, cand: Candidate, *, promote: Promote | None = None, qat: bool | None = None
                 ) -> tuple[dict[str, float], dict[str, float], Cost]:
        """(metrics, timing in seconds, cost) of the candidate after PTQ (and QAT if asked;
        ``promote`` and ``qat`` as in :meth:`prepared`).

        For a hardware model that charges spikes, the cost uses the spike rates
        measured on this quantized model over a fixed validation batch; otherwise it
        is the static cost.
        """
        start = time.perf_counter()
        qmodel, metrics, train_s, cost = self.prepared(cand, promote=promote, qat=qat)
        if cost is None:  # not measured for a promote decision, or QAT changed the model since
            cost = self.measured_cost(cand, qmodel)
        total = time.perf_counter() - start
        return metrics, {"fp_train_s": train_s or 0.0, "eval_s": total - (train_s or 0.0)}, cost

    def teacher(self) -> tuple[nn.Module, dict[str, float]]:
        """The distillation teacher (``task.teacher`` of ``task.teacher_space``, default the
        study's space), trained once on the task and cached like the FP models, and its
        metrics."""
        if self._teacher is None:
            cfg = self.train_cfg
            name = cfg.teacher_space or self.spec.space["name"]
            # the study's own space keeps its options (an input encoding, time steps)
            options = self.spec.space_options() if name == self.spec.space["name"] else {}
            space = make_space(name, self.task, self.spec.task["name"], **options)
            arch = dict(cfg.teacher)
            try:
                space.build(arch)
            except (KeyError, TypeError, ValueError) as e:
                raise BitnasError(f"task.teacher {arch} is not an architecture of space {name} "
                                  f"({type(e).__name__}: {e}); give its arch knobs as a trial stores "
                                  "them") from None
            epochs = cfg.teacher_epochs or cfg.epochs
            identity = {"teacher": name, "space_options": options, "arch": arch,
                        "task": self.spec.task["name"],
                        "task_options": self.spec.task_options(),
                        "train": {**{k: getattr(cfg, k) for k in cfg.FP_FIELDS}, "epochs": epochs},
                        "seed": self.spec.seed}

            def build() -> nn.Module:
                torch.manual_seed(self.spec.seed)
                return space.build(arch)

            checkpoint = self.fp_cache.checkpoint_path(identity)  # a killed run resumes training

            model, _ = self.fp_cache.get(identity, build,
                                         lambda m: train_fp(m, self.data.train, cfg, self.spec.seed,
                                                            epochs=epochs, checkpoint=checkpoint))
            self._teacher = (model, self.evaluator.evaluate(model))
        return self._teacher

    def fp_metrics(self, cand: Candidate) -> dict[str, float]:
        """Metrics of the candidate's FP model (memoised per architecture)."""
        key = cand.arch_key()
        if key not in self._fp_metrics:
            model, _ = self.fp_model(cand)
            self._fp_metrics[key] = self.evaluator.evaluate(model)
        return self._fp_metrics[key]
