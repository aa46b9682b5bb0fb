"""``bitnas reproduce factual_recall``: how many facts a transformer stores per bit of weight,
and which of its components need the bits.

The paper (Nichani, Lee, Bietti, "Understanding Factual Recall in Transformers via
Associative Memories", ICLR 2025) measures storage capacity against parameter count, in
float: about 0.15 facts per parameter for a one-layer transformer, d^2 ~ 1.3 N ln N for a
linear associative memory and m*d ~ 0.35 N ln N for an MLP one. Allen-Zhu and Li (arXiv
2404.05405) report about 2 bits of knowledge per parameter, still so at int8. Here, each
figure measured by bitnas's own pipeline (``factual_recall`` and ``associations`` tasks,
``recall_transformer`` and ``assoc_memory`` spaces, the FP cache, PTQ + QAT):

1. **Capacity against parameters, in float.** For each model size, the largest S (S = R,
   D = 8) whose S*R facts are all recalled at >= 99 % accuracy, by binary search on S; a
   fit of facts per parameter through the origin. The associative memories likewise, by
   binary search on N (M = N), fitted to d^2 = c N ln N and m*d = c N ln N.
2. **Capacity against weight bits.** The same search with every layer's weights uniformly
   quantized at 2, 3, 4, 6 and 8 bits after QAT (bracketed up to 1.25 x the float capacity):
   facts per parameter, facts per bit of weight storage (the cost model's stored bits: codes,
   scales, biases), and where the latter peaks. Every point, float included, fine-tunes the
   same epochs after FP training.
3. **Which components need the bits.** A bitnas study of one size at its float capacity:
   objectives accuracy and weight bytes, the bits of q, k, v, o, mlp_in and mlp_out searched.
   Its front, and a one-group ablation: every group at 8 bits but one at 2.

The capacity figures come from measured points only: a size whose every probe failed has no
capacity. What differs from the paper, and why: ``bitnas/experiments/factual_recall.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bitnas.experiments.base import Log, ModuleExperiment, load_experiment_spec, spec_variant
from bitnas.experiments.schemes import measure, pct, took, write_report
from bitnas.plan import FLOAT_BITS, describe_plan
from bitnas.registry import EXPERIMENTS
from bitnas.search.context import SearchContext
from bitnas.search.pareto import front_trials
from bitnas.search.study import run_search
from bitnas.spaces.base import WeightChoice
from bitnas.spaces.recall import RECALL_GROUPS, AssocMemorySpace, RecallTransformerSpace
from bitnas.spec import StudySpec

NAME = "factual_recall"
SPEC_FILE = Path(__file__).with_name(f"{NAME}.toml")
PAPER = {"facts_per_param": 0.15, "linear_c": 1.3, "mlp_c": 0.35, "allen_zhu_bits_per_param": 2.0}
#: success: every fact recalled at this accuracy (the paper's)
THRESHOLD = 0.99
GROUPS = tuple(RECALL_GROUPS)


def _settings(quick: bool) -> dict[str, Any]:
    """What each run measures; ``--quick`` keeps the pipeline and shrinks every part."""
    if quick:
        return {"sizes": [(2, 16)], "quant_sizes": [(2, 16)], "study_size": (2, 16), "bits": [2, 8],
                "samples": 80_000, "linear_dims": [8], "mlp": (8, [8]), "assoc_steps": 1000,
                "study_trials": 2, "ablation": ["v"]}
    return {"sizes": [(1, 16), (2, 32), (4, 32), (8, 64)], "quant_sizes": [(2, 32), (4, 32)],
            "study_size": (4, 32), "bits": [2, 3, 4, 6, 8], "samples": 1_000_000,
            "linear_dims": [8, 12, 16, 24], "mlp": (16, [8, 16, 32]), "assoc_steps": 4000,
            "study_trials": None, "ablation": list(GROUPS)}


def _contexts(facts: int, spec: StudySpec, samples: int) -> int:
    """Training sequences per fact so that every run trains on about ``samples`` sequences."""
    return max(1, math.ceil(samples / (spec.train.epochs * facts)))


def binary_search(ok: Callable[[int], bool], lo: int, hi: int) -> tuple[int | None, list[int]]:
    """The largest measured n in (lo, hi) with ``ok(n)``, by bisection (``lo`` and ``hi`` are
    brackets, never taken as measured); stops when the bracket is within 10 %. Returns it (None
    if no probe succeeded) and the probes in order."""
    best, probes = None, []
    while hi - lo > max(1, lo // 10):
        mid = (lo + hi) // 2
        probes.append(mid)
        if ok(mid):
            best, lo = mid, mid
        else:
            hi = mid
    return best, probes


def fit_through_origin(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """c minimising sum (y - c x)^2 (None without points)."""
    den = sum(x * x for x in xs)
    return sum(x * y for x, y in zip(xs, ys, strict=True)) / den if den else None


class _Recall:
    """Runs of the recall transformer at one size, cached by (S, bits)."""

    def __init__(self, base: StudySpec, heads: int, width: int, samples: int, out_dir: Path,
                 log: Log) -> None:
        self.base, self.heads, self.width = base, heads, width
        self.samples, self.out_dir, self.log = samples, out_dir, log
        self.arch = {"dim": base.space["dims"][0], "heads": heads, "head_dim": base.space["head_dims"][0],
                     "width": width}
        self.params = RecallTransformerSpace.parameters(self.arch)
        self.points: list[dict[str, Any]] = []

    def spec(self, subjects: int, bits: int) -> StudySpec:
        facts = subjects * subjects
        return spec_variant(self.base, f"{NAME}_h{self.heads}_m{self.width}",
                        {"heads": [self.heads], "widths": [self.width], "w_bits": [bits]},
                        {"subjects": subjects, "relations": subjects,
                         "contexts": _contexts(facts, self.base, self.samples)})

    def accuracy(self, subjects: int, bits: int) -> float:
        for p in self.points:
            if (p["subjects"], p["bits"]) == (subjects, bits):
                return p["accuracy"]
        ctx = SearchContext(self.spec(subjects, bits), cache_dir=self.out_dir / "fp_cache")
        # every point, float included, fine-tunes qat_epochs after FP training (QAT where the
        # weights are quantized): the same training for every bit-width
        row = measure(ctx, WeightChoice(bits, "uniform"), qat=True)
        point = {"heads": self.heads, "width": self.width, "subjects": subjects, "facts": subjects * subjects,
                 "bits": bits, "accuracy": row["accuracy"], "weight_bytes": row["weight_bytes"]}
        self.points.append(point)
        what = "float (fine-tuned)" if bits >= FLOAT_BITS else f"{bits}-bit QAT"
        self.log(f"{NAME}:   H {self.heads} m {self.width} ({self.params} params), S = R = {subjects} "
                 f"({subjects * subjects} facts), {what}: accuracy {row['accuracy']:.3f}")
        return row["accuracy"]

    def capacity(self, bits: int, hi: int) -> dict[str, Any]:
        lo = max(1, math.isqrt(max(1, self.params // 100)))
        best, probes = binary_search(lambda s: self.accuracy(s, bits) >= THRESHOLD, lo, hi)
        facts = None if best is None else best * best
        # the weight storage the cost model counts: codes, per-channel scales and the biases
        stored = next(p["weight_bytes"] for p in self.points if p["bits"] == bits) * 8
        per_fact = math.log2(int(self.base.task["answers"]))
        return {"heads": self.heads, "width": self.width, "params": self.params, "bits": bits,
                "subjects": best, "facts": facts, "probes": probes, "weight_bits": stored,
                "facts_per_param": None if facts is None else facts / self.params,
                "facts_per_weight_bit": None if facts is None else facts / stored,
                "fact_bits_per_param": None if facts is None else facts * per_fact / self.params}


def _memory_capacity(base: StudySpec, memory: str, dim: int, width: int, steps: int,
                     log: Log) -> dict[str, Any]:
    """Largest N (M = N) an associative memory recalls at >= 99 %, and c = size / (N ln N) with the
    paper's size: d^2 (linear) or m*d (MLP, whose two m x d matrices hold 2 m d weights)."""
    params = AssocMemorySpace.parameters({"memory": memory, "dim": dim, "width": width})
    size = dim * dim if memory == "linear" else width * dim
    def ok(n: int) -> bool:
        batch = min(256, n)
        epochs = max(1, math.ceil(steps * batch / n))  # about ``steps`` batches
        spec = StudySpec.from_dict({
            "study": {"name": f"{NAME}_{memory}", "trials": 1, "seed": base.seed, "strategy": "random"},
            "space": {"name": "assoc_memory", "memories": [memory], "dims": [dim], "widths": [max(1, width)],
                      "w_bits": [FLOAT_BITS]},
            "task": {"name": "associations", "inputs": n, "epochs": epochs, "lr": 0.01, "batch_size": batch},
            "hardware": {"name": "generic45nm"},
            "objectives": [{"name": "accuracy"}, {"name": "weight_bytes"}]})
        # no FP cache: a memory trains in seconds, and the cache's per-epoch checkpoint would
        # cost more than the training (an epoch here is one batch)
        acc = measure(SearchContext(spec, cache_dir=None), WeightChoice(FLOAT_BITS, "uniform"))
        log(f"{NAME}:   {memory} memory d {dim}" + (f" m {width}" if memory == "mlp" else "")
            + f": N = {n}: accuracy {acc['accuracy']:.3f}")
        return acc["accuracy"] >= THRESHOLD

    # bracket: well under and well over the paper's fit
    c = PAPER["linear_c"] if memory == "linear" else PAPER["mlp_c"]
    guess = _n_for(size / c)
    best, probes = binary_search(ok, max(2, guess // 4), 4 * guess)
    n_ln_n = None if best is None else best * math.log(best)
    return {"memory": memory, "dim": dim, "width": width, "params": params, "size": size, "n": best,
            "probes": probes, "n_ln_n": n_ln_n, "c": None if n_ln_n is None else size / n_ln_n}


def _top(params: int) -> int:
    """The upper bracket of S for a transformer: S^2 at twice the paper's 0.15 facts a parameter."""
    return math.isqrt(int(2 * PAPER["facts_per_param"] * params)) + 2


def _n_for(n_ln_n: float) -> int:
    """n with n ln n about ``n_ln_n``."""
    n = max(2.0, n_ln_n)
    for _ in range(30):
        n = max(2.0, n_ln_n / math.log(n))
    return int(n)


def run(out_dir: Path, *, quick: bool = False, trials: int | None = None,
        storage_url: str | None = None, log: Log = print) -> dict[str, Any]:
    """The three parts; write report.json and report.md into ``out_dir``."""
    start = time.perf_counter()
    cfg = _settings(quick)
    base = load_experiment_spec(SPEC_FILE, {}, trials=trials)
    # 1. capacity against parameters, in float
    log(f"{NAME}: 1. float capacity of {len(cfg['sizes'])} transformer sizes (binary search on S = R, D = 8)")
    runs = {size: _Recall(base, *size, cfg["samples"], out_dir, log) for size in cfg["sizes"]}
    floats = []
    for r in runs.values():
        floats.append(r.capacity(FLOAT_BITS, _top(r.params)))
    measured = [c for c in floats if c["facts"] is not None]
    slope = fit_through_origin([c["params"] for c in measured], [c["facts"] for c in measured])
    log(f"{NAME}: 1. associative memories (binary search on N, M = N)")
    memories = [_memory_capacity(base, "linear", d, 0, cfg["assoc_steps"], log)
                for d in cfg["linear_dims"]]
    mlp_dim, mlp_widths = cfg["mlp"]
    memories += [_memory_capacity(base, "mlp", mlp_dim, m, cfg["assoc_steps"], log)
                 for m in mlp_widths]
    fits = {}
    for kind in ("linear", "mlp"):
        pts = [m for m in memories if m["memory"] == kind and m["n"] is not None]
        fits[kind] = fit_through_origin([m["n_ln_n"] for m in pts], [m["size"] for m in pts])
    # 2. capacity against weight bits
    log(f"{NAME}: 2. capacity at {', '.join(map(str, cfg['bits']))} bits (QAT), sizes {cfg['quant_sizes']}")
    quant = []
    for size in cfg["quant_sizes"]:
        r = runs.setdefault(size, _Recall(base, *size, cfg["samples"], out_dir, log))
        top = next((c["subjects"] for c in floats if (c["heads"], c["width"]) == size), None)
        # above the float capacity too: near 99 % accuracy is not monotone in S
        hi = math.ceil(1.25 * top) + 1 if top else _top(r.params)
        quant += [r.capacity(b, hi) for b in cfg["bits"]]
    # 3. which components need the bits: a study at the float capacity of the spec's size
    size = cfg["study_size"]
    r = runs.setdefault(size, _Recall(base, *size, cfg["samples"], out_dir, log))
    cap = next((c for c in floats if (c["heads"], c["width"]) == size), None)
    if cap is None:
        cap = r.capacity(FLOAT_BITS, _top(r.params))
    subjects = cap["subjects"] or 2
    spec = spec_variant(r.spec(subjects, FLOAT_BITS), base.name, {"w_bits": base.space["w_bits"]})
    if quick and trials is None:
        spec = spec.replace(trials=cfg["study_trials"])
    log(f"{NAME}: 3. which groups need the bits: {spec.trials} trials of H {size[0]} m {size[1]} at S = R = "
        f"{subjects} ({subjects * subjects} facts)")
    result = run_search(spec, out_dir / spec.name, storage_url=storage_url, log=log)
    front = []
    for t in sorted(front_trials(result.study), key=lambda t: t.user_attrs["cost"]["weight_bytes"]):
        plan = t.user_attrs["candidate"]["plan"]
        front.append({"trial": t.number, "accuracy": t.user_attrs["metrics"]["accuracy"],
                      "weight_bytes": t.user_attrs["cost"]["weight_bytes"],
                      "bits": {g: plan[g]["w_bits"] for g in GROUPS}, "plan": describe_plan(plan)})
    ctx = SearchContext(spec, cache_dir=out_dir / "fp_cache")
    ablation = {"all 8": measure(ctx, WeightChoice(8, "uniform"), qat=True)["accuracy"]}
    for g in cfg["ablation"]:
        ablation[f"{g} at 2"] = _one_group_at(ctx, g, 2)
        log(f"{NAME}:   every group at 8 bits, {g} at 2: accuracy {ablation[f'{g} at 2']:.3f}")
    report = {"experiment": NAME, "quick": quick, "paper": PAPER, "threshold": THRESHOLD,
              "length": base.task.get("length"), "dim": base.space["dims"][0], "samples": cfg["samples"],
              "head_dim": base.space["head_dims"][0], "answers": base.task["answers"],
              "float": floats, "facts_per_param": slope, "memories": memories, "memory_fits": fits,
              "quantized": quant, "study": {"subjects": subjects, "facts": subjects * subjects,
                                            "heads": size[0], "width": size[1], "front": front,
                                            "ablation": ablation, "trials": spec.trials},
              "points": [p for rr in runs.values() for p in rr.points],
              "this_run_wall_s": time.perf_counter() - start}
    write_report(out_dir, report, format_report(report))
    plot(report, out_dir / "capacity.png")
    return report


def plot(r: dict[str, Any], path: Path) -> None:
    """capacity.png: facts against parameters (float: measured, fit, paper) and facts per weight
    bit against bits (each quantized size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bitnas.atomic import atomic_write

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    pts = [c for c in r["float"] if c["facts"] is not None]
    xs = [c["params"] for c in r["float"]]
    a.plot([c["params"] for c in pts], [c["facts"] for c in pts], "o", color="C0", label="bitnas, measured")
    top = max(xs, default=1)
    if r["facts_per_param"] is not None:
        a.plot([0, top], [0, r["facts_per_param"] * top], "-", color="C0",
               label=f"fit: {r['facts_per_param']:.3f} facts / param")
    a.plot([0, top], [0, PAPER["facts_per_param"] * top], "--", color="grey",
           label=f"paper: {PAPER['facts_per_param']} facts / param")
    a.set_xlabel("parameters (4 H d_h d + 2 m d)")
    a.set_ylabel("facts stored at >= 99 %")
    a.set_title("capacity, float")
    a.legend(fontsize=8)
    sizes = sorted({(c["heads"], c["width"]) for c in r["quantized"]})
    for i, (h, m) in enumerate(sizes):
        rows = [c for c in r["quantized"] if (c["heads"], c["width"]) == (h, m) and c["facts"] is not None]
        b.plot([c["bits"] for c in rows], [c["facts_per_weight_bit"] for c in rows], "o-", color=f"C{i + 1}",
               label=f"H {h}, m {m}")
    b.set_xlabel("weight bits (uniform, QAT)")
    b.set_ylabel("facts per bit of weight storage")
    b.set_title("storage per weight bit")
    b.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90))
    plt.close(fig)


def _one_group_at(ctx: SearchContext, group: str, bits: int) -> float:
    """Validation accuracy after QAT with every group at 8 bits but ``group`` at ``bits``."""
    from optuna.trial import FixedTrial

    from bitnas.experiments.schemes import plan_params

    params = plan_params(ctx, WeightChoice(8, "uniform"))
    params[f"{group}.w_bits"] = bits
    cand = ctx.space.suggest(FixedTrial(params))
    metrics, _, _ = ctx.evaluate(cand, qat=True)
    return metrics["accuracy"]


def _n(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def format_report(r: dict[str, Any]) -> str:
    p = r["paper"]
    lines = [f"# {NAME}: facts stored per parameter and per bit of weight", "", took(r) + " "
             f"Success = every fact recalled at >= {pct(r['threshold'])}. Transformer: d = {r['dim']}, "
             f"d_h = {r['head_dim']}, T = {r['length']}, D = {r['answers']}, S = R; each run trains on about "
             f"{r['samples']:,} sequences, then fine-tunes (QAT where quantized).", "",
             "## 1. Capacity against parameters (float)", "",
             "| H | m | params | largest S | facts | facts / param | probes (S) |",
             "|---|---|---|---|---|---|---|"]
    for c in r["float"]:
        lines.append(f"| {c['heads']} | {c['width']} | {c['params']:,} | {_n(c['subjects'], '{}')} | "
                     f"{_n(c['facts'], '{:,}')} | {_n(c['facts_per_param'])} | "
                     f"{', '.join(map(str, c['probes']))} |")
    lines += ["", f"Fit through the measured points: **{_n(r['facts_per_param'])} facts per parameter** "
              f"(paper: {p['facts_per_param']}).", "",
              "| memory | d | m | weights | size (d^2 or m d) | largest N | c = size / (N ln N) "
              "| probes (N) |",
              "|---|---|---|---|---|---|---|---|"]
    for m in r["memories"]:
        lines.append(f"| {m['memory']} | {m['dim']} | {m['width'] or '-'} | {m['params']:,} | "
                     f"{m['size']:,} | {_n(m['n'], '{}')} | {_n(m['c'])} | "
                     f"{', '.join(map(str, m['probes']))} |")
    f = r["memory_fits"]
    lines += ["", f"Fits: linear d^2 = **{_n(f['linear'])}** N ln N (paper {p['linear_c']}); MLP m d = "
              f"**{_n(f['mlp'])}** N ln N (paper {p['mlp_c']}).", "",
              "## 2. Capacity against weight bits (uniform, QAT)", "",
              "Weight bits: what the cost model stores (codes, per-channel scales, 32-bit biases).", "",
              "| H | m | bits | largest S | facts | facts / param | facts / weight bit | fact bits / param |",
              "|---|---|---|---|---|---|---|---|"]
    sizes = list(dict.fromkeys((c["heads"], c["width"]) for c in r["quantized"]))
    rows = [c for size in sizes for c in [*(q for q in r["quantized"] if (q["heads"], q["width"]) == size),
                                          *(f for f in r["float"] if (f["heads"], f["width"]) == size)]]
    for c in rows:
        bits = "float" if c["bits"] >= FLOAT_BITS else c["bits"]
        lines.append(f"| {c['heads']} | {c['width']} | {bits} | {_n(c['subjects'], '{}')} | "
                     f"{_n(c['facts'], '{:,}')} | {_n(c['facts_per_param'])} | "
                     f"{_n(c['facts_per_weight_bit'])} | {_n(c['fact_bits_per_param'])} |")
    peaks = {}
    for c in r["quantized"]:
        key = (c["heads"], c["width"])
        if c["facts_per_weight_bit"] is not None and (
                key not in peaks or c["facts_per_weight_bit"] > peaks[key]["facts_per_weight_bit"]):
            peaks[key] = c
    lines += [""] + [f"Storage per weight bit peaks at **{c['bits']} bits** for H {h} m {m} "
                     f"({c['facts_per_weight_bit']:.3f} facts a bit)." for (h, m), c in peaks.items()]
    lines += ["", f"Allen-Zhu and Li: about {p['allen_zhu_bits_per_param']} bits of knowledge per parameter, "
              "at int8 too (fact bits / param, above, at 8 bits).", ""]
    s = r["study"]
    lines += [f"## 3. Which components need the bits (H {s['heads']}, m {s['width']}, {s['facts']} facts; "
              f"{s['trials']} trials)", "",
              "| trial | accuracy | weight B | " + " | ".join(GROUPS) + " |",
              "|---|---|---|" + "---|" * len(GROUPS)]
    for x in s["front"]:
        lines.append(f"| {x['trial']} | {pct(x['accuracy'])} | {x['weight_bytes']:,.0f} | "
                     + " | ".join(str(x["bits"][g]) for g in GROUPS) + " |")
    lines += ["", "One group at 2 bits, the others at 8 (QAT): validation accuracy", "",
              "| plan | accuracy |", "|---|---|"]
    lines += [f"| {k} | {pct(v)} |" for k, v in s["ablation"].items()]
    lines += ["", "What differs from the paper and why: bitnas/experiments/factual_recall.md"]
    return "\n".join(lines)


EXPERIMENT = EXPERIMENTS.register(NAME)(ModuleExperiment(
    NAME, "Factual recall: facts stored per parameter and per weight bit, and which groups need the bits "
    "(Nichani et al. 2025)", run, format_report))
