"""The ``bitnas`` command line: search, worker, pareto, rebuild, export, report, reproduce, codebook,
list."""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import NoReturn

from bitnas.errors import BitnasError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2, like every other bad input
        self.exit(2, f"bitnas: error: {message} (see `{self.prog} --help`)\n")


def _spec_path(arg: str) -> Path:
    """A spec file, or the name of a bundled experiment (``quickstart``)."""
    p = Path(arg)
    if p.is_file() or p.is_dir() or p.suffix == ".toml":
        return p  # load_spec says what is wrong with a directory or a missing .toml
    experiments = resources.files("bitnas.experiments")
    bundled = experiments.joinpath(f"{arg}.toml")
    if bundled.is_file():
        return Path(str(bundled))
    names = sorted(f.name.removesuffix(".toml") for f in experiments.iterdir() if f.name.endswith(".toml"))
    raise BitnasError(f"{arg} is neither a spec file nor a bundled spec; bundled specs: {', '.join(names)} "
                      "(or pass the path to a .toml study spec)")


def _progress_log(args: argparse.Namespace):
    """Per-trial progress lines on stderr, or nothing with --quiet."""
    if args.quiet:
        return lambda msg: None
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def _open_existing(target: str, study_name: str | None):
    import optuna

    from bitnas.search.storage import open_storage, pick_study, resolve_storage
    from bitnas.search.study import spec_of

    url = resolve_storage(target)
    storage = open_storage(url, must_exist=True)
    name = pick_study(storage, url, study_name)
    study = optuna.load_study(study_name=name, storage=storage)
    return study, spec_of(study), url


STRATEGY_HELP = ("override [study] strategy: tpe, nsga2, nsga3, gp, ehvi, random, uniform, ilp or "
                 "sensitivity-guided (see `bitnas list`)")


def cmd_search(args: argparse.Namespace) -> int:
    from bitnas.search.study import run_search, summary
    from bitnas.spec import load_spec

    spec = load_spec(_spec_path(args.spec))
    spec = spec.replace(trials=args.trials, seed=args.seed, sampler=args.sampler)
    out = Path(args.out) if args.out else Path("runs") / spec.name

    log = _progress_log(args)
    result = run_search(spec, out, storage_url=args.storage, log=log)
    print(summary(result, spec))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from bitnas.search.storage import mask_url
    from bitnas.search.study import finished_trials, run_search
    from bitnas.spec import load_spec

    spec = load_spec(_spec_path(args.spec)).replace(trials=args.trials, sampler=args.sampler)
    if args.storage.startswith("sqlite:"):
        print("bitnas: warning: SQLite is for one process at a time; for several workers use "
              "journal:///path/study.log (one machine or a shared filesystem) or postgresql://...",
              file=sys.stderr)
    if args.threads is not None:
        if args.threads < 1:
            raise BitnasError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else Path("runs") / spec.name
    log = _progress_log(args)
    result = run_search(spec, out, storage_url=args.storage, log=log, export=False, shared=True)
    done = len(finished_trials(result.study))
    shown = mask_url(args.storage)
    hint = ("`bitnas pareto <the same storage URL>`" if shown != args.storage
            else f"`bitnas pareto {shown}`")  # a masked URL would not work if pasted
    print(f"worker done: study {spec.name!r} in {shown} has {done}/{spec.trials} "
          f"finished trials; {hint} prints the front")
    return 0


def cmd_pareto(args: argparse.Namespace) -> int:
    from bitnas.search.hypervolume import best_under, front_hypervolume, knee, parse_bounds
    from bitnas.search.pareto import feasible_trials, format_table, front_trials, member_record

    study, spec, _ = _open_existing(args.run, args.study)
    records = [member_record(t, spec.objectives) for t in front_trials(study)]
    if args.under:
        fields = list(dict.fromkeys([*(o.name for o in spec.objectives), *spec.cost_fields]))
        bounds = parse_bounds(args.under, fields)
        # every feasible trial: under a bound on a field that is not an objective, the
        # best one need not be on the front
        best = best_under([member_record(t, spec.objectives) for t in feasible_trials(study)],
                          spec.objectives, bounds)
        if best is None:
            print(f"no feasible trial of {study.study_name!r} has "
                  + " and ".join(f"{k} <= {v:g}" for k, v in bounds.items()), file=sys.stderr)
            return 1
        records = [best]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    if args.under:
        print(f"best {spec.objectives[0].name} of all feasible trials with " + " and ".join(args.under) + ":")
        print(format_table(records, spec.objectives))
        return 0
    print(f"Pareto front of {study.study_name!r}: {len(records)} members")
    print(format_table(records, spec.objectives))
    k = knee(records, spec.objectives)
    if k is not None:
        print(f"knee: trial {k['trial']} (closest to the ideal point, objectives scaled over the front)")
    print(front_hypervolume(study, spec.objectives))
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from bitnas.search.rebuild import rebuild_export, rebuild_trial

    if Path(args.run).suffix == ".pt":  # a `bitnas export --format torch` file
        if not Path(args.run).is_file():
            raise BitnasError(f"{args.run} not found; give the .pt file `bitnas export --format torch` wrote")
        out = rebuild_export(Path(args.run))
        args.trial = out["trial"]
    else:
        if args.trial is None:
            raise BitnasError("bitnas rebuild RUN needs --trial N (the trial to rebuild); "
                              "an exported FILE.pt needs none")
        study, spec, _ = _open_existing(args.run, args.study)
        run_dir = Path(args.run)
        cache = run_dir / "fp_cache" if run_dir.is_dir() else None
        out = rebuild_trial(study, spec, args.trial, cache)
    label = "candidate" if args.trial is None else f"trial {args.trial}"
    print(f"{label}: {out['candidate'].to_json()}")
    if out["torch_threads"]:
        print(f"  rebuilt with {out['torch_threads']} torch thread(s), as the trial was evaluated")
    if out["state"] != "COMPLETE":
        print(f"  note: trial {args.trial} is {out['state']}"
              + (" (infeasible: costed, never evaluated)" if out["state"] == "PRUNED" else "")
              + "; the figures below are measured now")
    for k, v in out["metrics"].items():
        stored = out["stored_metrics"].get(k)
        same = "" if stored is None else ("  (same as stored)" if stored == v
                                          else f"  (stored {stored:.4f})")
        print(f"  {k} = {v:.4f}{same}")
    print(f"  energy_j = {out['cost'].energy_j:.4e}  weight_bytes = {out['cost'].weight_bytes}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bitnas.registry import EXPORTERS
    from bitnas.search.export import export_trial

    EXPORTERS.create(EXPORTERS.check(args.format, "--format"))  # a wrong format before any work

    study, spec, _ = _open_existing(args.run, args.study)
    run_dir = Path(args.run)
    cache = run_dir / "fp_cache" if run_dir.is_dir() else None
    default = (run_dir if run_dir.is_dir() else Path(".")) / f"export_{args.format}"
    out = Path(args.out) if args.out else default
    paths, weight_bytes = export_trial(study, spec, args.trial, args.format, out, cache)
    files = ", ".join(f"{p} ({p.stat().st_size:,} B)" for p in paths)
    print(f"trial {args.trial} as {args.format}: {files}; the cost model's weight_bytes: {weight_bytes:,} B")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bitnas.search.report import write_report
    from bitnas.search.storage import mask_url

    study, spec, url = _open_existing(args.run, args.study)
    run_dir = Path(args.run)
    # beside the study: the run directory, or the folder of a .log/.db file; for a URL, here
    where = run_dir if run_dir.is_dir() else run_dir.parent if run_dir.is_file() else Path(".")
    out = Path(args.out) if args.out else where / "report.html"
    path = write_report(study, spec, out, run=mask_url(args.run), study_arg=args.study,
                        storage=mask_url(url))
    print(f"wrote {path}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from bitnas.registry import EXPERIMENTS
    from bitnas.search.storage import mask_url

    module = EXPERIMENTS.get(args.experiment)
    if args.quick and not module.has_quick:
        raise BitnasError(f"experiment {args.experiment} has no --quick variant; run it without --quick")
    name = module.name + ("_quick" if args.quick else "")
    out = Path(args.out) if args.out else Path("runs") / name
    log = _progress_log(args)
    report = module.run(out, quick=args.quick, trials=args.trials, storage_url=args.storage, log=log)
    print(module.format_report(report))
    where = f"storage {mask_url(args.storage)}" if args.storage else str(out)
    front = " (and the front: pareto.json, .csv, .png)" if (out / "pareto.json").is_file() else ""
    study = f"; the study is in {where}" if front or args.storage else ""
    print(f"\nwrote {out / 'report.md'} and report.json{front}{study}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from bitnas.search import bench

    out = Path(args.out) if args.out else Path("runs") / ("bench_quick" if args.quick else "bench")
    log = lambda msg: print(msg, flush=True)  # noqa: E731  (the hv_ratio lines go to stdout)
    report = bench.run(out, quick=args.quick, log=log)
    print(bench.format_report(report))
    print(f"\nwrote {out / 'bench.md'}, bench.json and bench.png")
    return 0


def cmd_codebook(args: argparse.Namespace) -> int:
    from bitnas.quantizers.codebook import build_codebook, load_sources, save_codebook

    out = Path(args.out)
    if out.is_dir():
        raise BitnasError(f"--out {out} is a directory; pass a file name such as {out / 'codebook.npz'}")
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise BitnasError(f"--out {out} exists and is not a regular file; pass a new file name")
    parent = out.parent if out.parent != Path("") else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise BitnasError(f"--out {out}: cannot write in {parent}; pass a file in a writable folder")
    book = build_codebook(load_sources(args.sources), dim=args.dim, bits=args.bits,
                          per_source=args.per_source, seed=args.seed, log=print)
    save_codebook(book, out)
    print(f"codebook: {book.size} codewords of dimension {book.dim}, {book.rom_bits // 8} bytes of ROM "
          f"(float16), written to {out}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from bitnas.registry import ALL

    for kind, reg in ALL.items():
        print(f"{kind}:")
        for name, desc in reg.describe().items():
            origin = reg.origin(name)
            print(f"  {name:<24} {desc}" + ("" if origin == "bitnas" else f"  [{origin}]"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bitnas", description="Bit-width and architecture search with hardware costs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("search", help="run or resume a study from a TOML spec")
    s.add_argument("spec", help="a .toml study spec, or a bundled experiment name (quickstart)")
    s.add_argument("--trials", type=int, help="total finished trials the study should have")
    s.add_argument("--storage", help="Optuna storage URL (default: journal file study.log in --out); "
                   "SQLAlchemy URLs (sqlite:///rel.db, sqlite:////abs.db, postgresql://...) or "
                   "journal:///rel.log, journal:////abs.log")
    s.add_argument("--out", help="run directory (default: runs/<study name>)")
    s.add_argument("--seed", type=int, help="override [study] seed")
    s.add_argument("--strategy", "--sampler", dest="sampler", help=STRATEGY_HELP)
    s.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    s.set_defaults(func=cmd_search)

    wk = sub.add_parser(
        "worker", help="join a study as one of many workers, creating it if needed",
        description="Run trials of a study that other workers share, until the study has "
                    "--trials finished trials (all workers together). Storage URLs: "
                    "journal:///relative/study.log or journal:////absolute/study.log (a journal "
                    "file; one machine or a shared filesystem), postgresql://user:pw@host/db "
                    "(many machines; heartbeats retry a killed worker's trial). sqlite:/// is for "
                    "one process only.")
    wk.add_argument("spec", help="a .toml study spec, or a bundled experiment name")
    wk.add_argument("--storage", required=True, help="the shared Optuna storage URL")
    wk.add_argument("--trials", type=int, help="the study's total budget of finished trials")
    wk.add_argument("--out", help="directory for the FP-model cache (default: runs/<study name>)")
    wk.add_argument("--strategy", "--sampler", dest="sampler", help=STRATEGY_HELP)
    wk.add_argument("--threads", type=int,
                    help="torch threads for this worker (default: torch's, one per core). With N "
                         "workers on one machine give each cores/N: workers that each use every "
                         "core slow each other down several times over")
    wk.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    wk.set_defaults(func=cmd_worker)

    pa = sub.add_parser("pareto", help="print the front of an existing study")
    pa.add_argument("run", help="run directory, .log or .db file, or storage URL")
    pa.add_argument("--study", help="study name, if the storage holds several")
    pa.add_argument("--json", action="store_true", help="print the records as JSON")
    pa.add_argument("--under", action="append", metavar="FIELD=VALUE",
                    help="best under a budget: of all feasible trials, the one with the best first "
                         "objective whose FIELD (an objective or cost field) is at most VALUE; repeatable")
    pa.set_defaults(func=cmd_pareto)

    r = sub.add_parser("rebuild", help="rebuild one trial and measure it again")
    r.add_argument("run", help="run directory, .log or .db file, storage URL, or a FILE.pt that "
                   "`bitnas export --format torch` wrote")
    r.add_argument("--trial", type=int, help="trial number (not for an exported FILE.pt)")
    r.add_argument("--study", help="study name, if the storage holds several")
    r.set_defaults(func=cmd_rebuild)

    ex = sub.add_parser("export", help="write one trial in a deployable format (see `bitnas list`)")
    ex.add_argument("run", help="run directory, .log or .db file, or storage URL")
    ex.add_argument("--trial", type=int, required=True, help="trial number (a feasible one)")
    ex.add_argument("--format", required=True, help="export format, e.g. ai8x")
    ex.add_argument("--out", help="output directory (default: RUN/export_<format>)")
    ex.add_argument("--study", help="study name, if the storage holds several")
    ex.set_defaults(func=cmd_export)

    rep = sub.add_parser("report", help="write one self-contained HTML page about a study (fronts, "
                         "hypervolume, bits per layer, costs, timing)")
    rep.add_argument("run", help="run directory, .log or .db file, or storage URL")
    rep.add_argument("--out", help="the HTML file to write (default: RUN/report.html)")
    rep.add_argument("--study", help="study name, if the storage holds several")
    rep.set_defaults(func=cmd_report)

    rp = sub.add_parser("reproduce", help="run a paper experiment and set its figures beside the paper's")
    rp.add_argument("experiment", help="the experiment (see `bitnas list`)")
    rp.add_argument("--quick", action="store_true",
                    help="a reduced version of the same pipeline (minutes, used by the tests)")
    rp.add_argument("--trials", type=int, help="total finished trials (default: the experiment's)")
    rp.add_argument("--storage", help="Optuna storage URL (default: journal file study.log in --out)")
    rp.add_argument("--out", help="run directory (default: runs/<experiment>[_quick])")
    rp.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    rp.set_defaults(func=cmd_reproduce)

    be = sub.add_parser("bench", help="search strategies side by side against an exhaustive front")
    be.add_argument("--quick", action="store_true", help="a reduced version (minutes)")
    be.add_argument("--out", help="output directory (default: runs/bench[_quick])")
    be.set_defaults(func=cmd_bench)

    cb = sub.add_parser("codebook", help="build a universal codebook for the codebook quantizer")
    cba = cb.add_subparsers(dest="action", required=True, parser_class=_Parser)
    cbb = cba.add_parser(
        "build", help="fit a codebook to trained networks' weights",
        description="Sample the same number of d-dim sub-vectors (rows scaled to unit RMS) from every "
                    "source network, fit a Gaussian KDE and draw 2^bits codewords from it (VQ4ALL). "
                    "Use the file as [quantizers.codebook] path = FILE.")
    cbb.add_argument("sources", nargs="+", metavar="SOURCE",
                     help="a cached model (fp_cache/*.pt) or a run directory (all of its fp_cache/*.pt)")
    cbb.add_argument("--out", required=True, help="the codebook file to write (.npz)")
    cbb.add_argument("--dim", type=int, default=4, help="codeword dimension d (default 4)")
    cbb.add_argument("--bits", type=int, default=12, help="index bits B: 2^B codewords, 1..16 (default 12)")
    cbb.add_argument("--per-source", type=int, default=20000,
                     help="sub-vectors sampled from each source network (default 20000)")
    cbb.add_argument("--seed", type=int, default=0, help="seed of the sampling and the draw (default 0)")
    cbb.set_defaults(func=cmd_codebook)

    li = sub.add_parser("list", help="list registered spaces, quantizers, tasks, hardware, strategies")
    li.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    import optuna
    import sqlalchemy

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BitnasError as e:
        print(f"bitnas: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an unwritable --out, a file where a directory should be, ...
        where = f" {e.filename}" if e.filename else ""
        print(f"bitnas: error: cannot use{where}: {e.strerror or e}; choose another path",
              file=sys.stderr)
        return 2
    except (optuna.exceptions.OptunaError, sqlalchemy.exc.SQLAlchemyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        print(f"bitnas: error: the study storage failed ({first}); it may be corrupt, "
              "or written by another program", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bitnas: interrupted; finished trials are stored, rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
