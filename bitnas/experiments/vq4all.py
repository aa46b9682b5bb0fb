"""``bitnas reproduce vq4all``: one universal codebook for several networks.

The paper (Deng, Li, Wang, Gu, Xu, Huang, arXiv 2412.06875) builds one codebook, meant for
on-chip ROM, from weight sub-vectors sampled equally from many networks: it fits a Gaussian
kernel density estimate to them and draws the codewords from it. Each network then stores
only indices. Its headline is more than 16x compression at high accuracy across
architectures. Here:

1. three different networks are trained by the search's own pipeline: a CNN (digits), the
   quickstart's Spikformer (event digits) and an ai8x-space CNN (digits);
2. ``bitnas.quantizers.codebook.build_codebook`` samples the same number of RMS-normalised
   d-dim sub-vectors from each (``bitnas codebook build`` does the same from run
   directories), fits scipy's Gaussian KDE and draws 2^B codewords: ``codebook.npz``;
3. every layer of each network is quantized to its nearest codeword among the first 2^b
   (post-training, hard assignment), for several b, beside plain uniform PTQ at the same
   2 bits a weight; then, at the widest b, fine-tuned (the spec's QAT epochs) with the
   hard assignment (straight through) and with the paper's soft top-n assignment
   (learnable ratios, frozen progressively), beside uniform 2-bit QAT.

Reported per network: accuracy (validation and test) and compression (its float weights'
bytes over its indices, scales and biases); and over all three, with the codebook counted
once, in ROM. What differs from the paper: ``bitnas/experiments/vq4all.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bitnas.experiments.base import Log, ModuleExperiment, load_experiment_spec
from bitnas.experiments.schemes import candidate, measure, pct, took, write_report
from bitnas.quantizers.codebook import build_codebook, save_codebook, sub_vectors, weight_tensors
from bitnas.registry import EXPERIMENTS
from bitnas.search.context import SearchContext
from bitnas.spaces.base import WeightChoice
from bitnas.spec import StudySpec

NAME = "vq4all"
HERE = Path(__file__).parent
NETWORKS = {"CNN (digits)": HERE / "vq4all_cnn.toml",
            "Spikformer (event digits)": HERE / "vq4all_spikformer.toml",
            "ai8x CNN (digits)": HERE / "vq4all_ai8x.toml"}
#: the codebook: d-dim codewords, 2^B of them, sub-vectors sampled from each network
DIM, BITS, PER_SOURCE, SEED = 4, 8, 20_000, 0
#: index bits the networks are measured at (the first 2^b codewords)
INDEX_BITS = (4, 6, 8)
#: fine-tuning modes of the codebook's assignment compared after QAT (PTQ is hard either way)
ASSIGN = ("hard", "soft")
PAPER = {"compression": 16.0, "note": "more than 16x at high accuracy, across architectures"}
#: ``--quick``: the same pipeline, small enough for the test suite
QUICK = {"task": {"epochs": 3, "qat_epochs": 1}}
QUICK_BITS, QUICK_INDEX_BITS = 6, (6,)


def _with_codebook(spec: StudySpec, path: Path, index_bits: tuple[int, ...]) -> StudySpec:
    """The network's spec with the built codebook, offering the bits the report measures."""
    raw = spec.to_dict()
    raw["quantizers"] = {**raw.get("quantizers", {}), "codebook": {"path": str(path), "assign": list(ASSIGN)}}
    raw["space"] = {**raw["space"], "w_bits": sorted({2, *index_bits, 32})}
    return StudySpec.from_dict(raw)


def run(out_dir: Path, *, quick: bool = False, trials: int | None = None,
        storage_url: str | None = None, log: Log = print) -> dict[str, Any]:
    """Train the three networks, build the codebook, measure; write report.json and report.md."""
    start = time.perf_counter()
    bits, index_bits = (QUICK_BITS, QUICK_INDEX_BITS) if quick else (BITS, INDEX_BITS)
    specs = {label: load_experiment_spec(f, QUICK, quick=quick) for label, f in NETWORKS.items()}
    fp_rows, states = {}, {}
    for label, spec in specs.items():
        ctx = SearchContext(spec, cache_dir=out_dir / "fp_cache")
        log(f"{NAME}: {label}: float model (trained once, then cached)")
        fp_rows[label] = measure(ctx, WeightChoice(32, "uniform"))
        model, _ = ctx.fp_model(candidate(ctx, WeightChoice(32, "uniform")))
        states[label] = model.state_dict()
    available = {label: sum(len(sub_vectors(w, DIM)) for w in weight_tensors(sd).values())
                 for label, sd in states.items()}
    per_source = min(PER_SOURCE, *available.values())
    book = build_codebook(states, dim=DIM, bits=bits, per_source=per_source, seed=SEED, log=log)
    path = save_codebook(book, out_dir / "codebook.npz")
    log(f"{NAME}: codebook of {book.size} codewords, d = {book.dim}, {book.rom_bits // 8:,} bytes of ROM, "
        f"from {per_source:,} sub-vectors of each network: {path}")
    networks = []
    for label, spec in specs.items():
        ctx = SearchContext(_with_codebook(spec, path, index_bits), cache_dir=out_dir / "fp_cache")
        fp = fp_rows[label]
        rows = [{**fp, "label": "float (32 bits)", "bits_per_weight": 32.0}]
        top = max(index_bits)
        todo = [(WeightChoice(2, "uniform"), False, "uniform2"),
                *((WeightChoice(b, "codebook", (("assign", "hard"),)), False, f"codebook{b}")
                  for b in index_bits),
                (WeightChoice(2, "uniform"), True, "uniform2 + QAT"),
                *((WeightChoice(top, "codebook", (("assign", a),)), True, f"codebook{top} + QAT ({a})")
                  for a in ASSIGN)]
        for choice, qat, name in todo:
            row = measure(ctx, choice, qat=qat)
            per_weight = choice.w_bits / DIM if choice.quantizer == "codebook" else float(choice.w_bits)
            row.update(label=name, bits_per_weight=per_weight, qat=qat)
            rows.append(row)
        for row in rows:
            row["compression"] = fp["weight_bytes"] / row["weight_bytes"]
            log(f"  {label}: {row['label']:18s} accuracy {row['accuracy']:.3f} "
                f"(test {row['test_accuracy']:.3f}), {int(row['weight_bytes']):,} B "
                f"({row['compression']:.1f}x)")
        networks.append({"network": label, "rows": rows, "subvectors": available[label]})
    fp_total = sum(n["rows"][0]["weight_bytes"] for n in networks)
    rom = book.rom_bits // 8
    totals = []
    for b in index_bits:  # after PTQ, all three networks at b-bit indices, the codebook once
        rows_b = [next(r for r in n["rows"] if r["label"] == f"codebook{b}") for n in networks]
        coded_b = sum(r["weight_bytes"] for r in rows_b)
        totals.append({"index_bits": b, "bits_per_weight": b / DIM, "bytes": coded_b,
                       "compression_without_rom": fp_total / coded_b,
                       "compression_with_rom": fp_total / (coded_b + rom),
                       "accuracy_drop_points": [100 * (n["rows"][0]["accuracy"] - r["accuracy"])
                                                for n, r in zip(networks, rows_b, strict=True)]})
    top = f"codebook{max(index_bits)}"
    coded = totals[-1]["bytes"]
    report = {"experiment": NAME, "quick": quick, "paper": PAPER, "networks": networks,
              "codebook": {"file": str(path), "codewords": book.size, "dim": book.dim,
                           "rom_bytes": rom, "per_source": per_source, "bandwidth": book.bandwidth},
              "total": {"fp_bytes": fp_total, "index_bytes": coded, "rom_bytes": rom,
                        "compression_without_rom": fp_total / coded,
                        "compression_with_rom": fp_total / (coded + rom), "at": top},
              "totals": totals,
              "this_run_wall_s": time.perf_counter() - start}
    write_report(out_dir, report, format_report(report))
    return report


def format_report(r: dict[str, Any]) -> str:
    cb, t = r["codebook"], r["total"]
    lines = [f"# {NAME}: one codebook for three networks", "",
             took(r) + " "
             f"Codebook: {cb['codewords']} codewords of d = {cb['dim']} (float16), {cb['rom_bytes']:,} bytes "
             f"of ROM, drawn from a Gaussian KDE (factor {cb['bandwidth']:.3f}) of {cb['per_source']:,} "
             "sub-vectors of each network.", "",
             "| | paper | bitnas, three networks |", "|---|---|---|",
             f"| compression | {r['paper']['note']} | {t['compression_without_rom']:.1f}x without the "
             f"codebook, {t['compression_with_rom']:.1f}x with it counted once ({t['at']}) |"]
    lines += ["", "## All three networks after PTQ, the codebook counted once", "",
              "| index bits | bits a weight | bytes (FP: " + f"{t['fp_bytes']:,.0f}) | compression | "
              "with the codebook | accuracy drop, points (" + ", ".join(n["network"] for n in r["networks"])
              + ") |", "|---|---|---|---|---|---|"]
    for x in r.get("totals", []):
        lines.append(f"| {x['index_bits']} | {x['bits_per_weight']:g} | {x['bytes']:,.0f} | "
                     f"{x['compression_without_rom']:.1f}x | {x['compression_with_rom']:.1f}x | "
                     + ", ".join(f"{d:+.1f}" for d in x["accuracy_drop_points"]) + " |")
    for n in r["networks"]:
        lines += ["", f"## {n['network']} ({n['subvectors']:,} sub-vectors)", "",
                  "| weights | bits a weight | accuracy | test | weight B | compression |",
                  "|---|---|---|---|---|---|"]
        for x in n["rows"]:
            lines.append(f"| {x['label']} | {x['bits_per_weight']:g} | {pct(x['accuracy'])} | "
                         f"{pct(x['test_accuracy'])} | {int(x['weight_bytes']):,} | "
                         f"{x['compression']:.1f}x |")
    lines += ["", "Weight bytes hold the indices (or codes), the per-channel scales and the biases; the "
              "codebook is in ROM, counted once above.", "",
              "What differs from the paper and why: bitnas/experiments/vq4all.md"]
    return "\n".join(lines)


EXPERIMENT = EXPERIMENTS.register(NAME)(ModuleExperiment(
    NAME, "VQ4ALL: one universal codebook (Gaussian KDE) for a CNN, a Spikformer and an ai8x CNN",
    run, format_report))
