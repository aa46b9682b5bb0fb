"""``bitnas report``: one self-contained HTML page about a finished or running study.

It shows the front in every pair of objectives (front, dominated and infeasible trials
apart, the knee marked), the hypervolume after each trial, the bits (and scheme) of
every layer group across the front, the per-layer cost of the knee and of the cheapest
member, where the time went, the stored spec and strategy, and a table of the front
whose rows carry the commands that rebuild and export each member (anchors
``#trial-N``).

The figures are matplotlib PNGs embedded as base64 data URIs, and the page has no
script at all: matplotlib is already a dependency of bitnas (pareto.png), a static PNG
of a small figure embeds in a few KB, and the file opens offline in any browser, years
later, without a JS bundle from a CDN (plotly's is several MB, in every page).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import re
import shlex
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bitnas import __version__
from bitnas.errors import BitnasError
from bitnas.hardware_models import Cost
from bitnas.plan import FLOAT_BITS, PLAN_LEGEND, QuantPlan, candidate_key, describe_arch, describe_plan
from bitnas.registry import EXPORTERS, SPACES
from bitnas.search.hypervolume import front_hypervolume, history, knee, study_reference
from bitnas.search.pareto import (
    atomic_write,
    axis_label,
    format_value,
    front_trials,
    is_feasible,
    member_record,
    objective_value,
)
from bitnas.spec import Objective, StudySpec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
#: the timing_s keys in the order a trial spends them; any other key follows
TIMING_ORDER = ("workload_s", "cost_s", "fp_train_s", "eval_s")
TIMING_LABELS = {"workload_s": "workload (the network's layers)", "cost_s": "cost model",
                 "fp_train_s": "FP training", "eval_s": "evaluation (PTQ, QAT)"}

DPI = 90
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_COLOURS = {"front": "tab:blue", "dominated": "0.6", "infeasible": "tab:red", "knee": "tab:orange"}


# ---------------------------------------------------------------- reading the study


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    """The study's finished bitnas trials (those that carry a cost), in trial order."""
    return sorted((t for t in study.get_trials(deepcopy=False, states=FINISHED) if "cost" in t.user_attrs),
                  key=lambda t: t.number)


def _check_trials(study: optuna.Study, trials: Sequence[FrozenTrial]) -> None:
    """A one-line BitnasError for a trial whose stored candidate or cost this bitnas
    cannot read (an altered storage, another program's trials)."""
    for t in trials:
        what = "candidate"
        try:
            cand = t.user_attrs["candidate"]
            QuantPlan.from_dict(cand["plan"])
            if not isinstance(cand["arch"], Mapping):
                raise TypeError("arch is not a table")
            what = "cost"
            cost = Cost.from_dict(t.user_attrs["cost"])
            for layer in cost.per_layer.values():
                if not isinstance(layer, Mapping):
                    raise TypeError("a per-layer entry is not a table")
            what = "timing"
            if not isinstance(t.user_attrs.get("timing_s", {}), Mapping):
                raise TypeError("timing_s is not a table")
        except (BitnasError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise BitnasError(
                f"trial {t.number} of study {study.study_name!r} holds a {what} this bitnas cannot "
                f"read ({type(e).__name__}: {e}); the storage was altered, or written by an "
                "incompatible bitnas version") from None


def _kind(t: FrozenTrial, front_keys: set[str]) -> str:
    if t.state != TrialState.COMPLETE or not is_feasible(t):
        return "infeasible"
    key = candidate_key(t.user_attrs.get("candidate", t.params))
    return "front" if key in front_keys else "dominated"


def _per_layer_field(records: Sequence[Mapping[str, Any]]) -> str | None:
    """energy_j if the per-layer costs hold it, else their first numeric field."""
    layers = [v for r in records for v in r["cost"]["per_layer"].values()]
    if any("energy_j" in v for v in layers):
        return "energy_j"
    for v in layers:
        for k, x in v.items():
            if isinstance(x, int | float) and not isinstance(x, bool):
                return k
    return None


def _layer_total(record: Mapping[str, Any], field: str) -> float:
    if isinstance(record["cost"].get(field), int | float):
        return float(record["cost"][field])
    return float(sum(float(v.get(field, 0.0)) for v in record["cost"]["per_layer"].values()))


def timing_split(trials: Sequence[FrozenTrial]) -> list[tuple[str, float]]:
    """(phase, seconds summed over ``trials``), in the order a trial spends them, then the
    rest of the trials' wall time (sampler, storage, framework) where it is positive."""
    sums: dict[str, float] = {}
    for t in trials:
        for k, v in t.user_attrs.get("timing_s", {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool):
                sums[k] = sums.get(k, 0.0) + float(v)
    keys = [k for k in TIMING_ORDER if k in sums] + sorted(k for k in sums if k not in TIMING_ORDER)
    rows = [(k, sums[k]) for k in keys]
    wall = sum(t.duration.total_seconds() for t in trials if t.duration)
    rest = wall - sum(sums.values())
    if rest > 0:
        rows.append(("other_s", rest))
    return rows


# ---------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def _margins(fig: Any, left: float, right: float, bottom: float, top: float) -> None:
    """Margins in inches (tight_layout would draw the figure twice to find them)."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=min(0.6, left / w), right=max(0.65, 1 - right / w),
                        bottom=min(0.6, bottom / h), top=max(0.65, 1 - top / h))


def _text_in(chars: int, points: float) -> float:
    """About how wide ``chars`` characters of a ``points``-point font are, in inches."""
    return chars * points * 0.6 / 72


def _label(o: Objective) -> str:
    return f"{axis_label(o.name)}, {'higher' if o.direction == 'maximize' else 'lower'} is better"


def _maybe_log(ax: Any, values: Sequence[float], axis: str) -> None:
    from matplotlib.ticker import NullFormatter

    pos = [v for v in values if v > 0]
    if pos and len(pos) == len(values) and max(pos) / min(pos) > 20:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        (ax.xaxis if axis == "x" else ax.yaxis).set_minor_formatter(NullFormatter())  # they overlap


def pair_scatter(trials: Sequence[FrozenTrial], objectives: Sequence[Objective], front_keys: set[str],
                 y_i: int, x_i: int | None, knee_trial: int | None,
                 members: set[int] | None = None) -> bytes:
    """One objective against another (``x_i`` None: against the trial number), every
    finished trial placed; an infeasible trial never evaluated on an axis's metric sits
    as a tick on that axis's edge."""
    plt = _plt()
    from matplotlib.transforms import blended_transform_factory

    y_obj = objectives[y_i]
    x_obj = objectives[x_i] if x_i is not None else None
    pts: dict[str, list[tuple[float | None, float | None, int]]] = {
        "front": [], "dominated": [], "infeasible": []}
    for t in trials:
        x = float(t.number) if x_obj is None else objective_value(t, x_obj, x_i)
        y = objective_value(t, y_obj, y_i)
        pts[_kind(t, front_keys)].append((x, y, t.number))
    fig, ax = plt.subplots(figsize=(5.2, 3.9))
    style = {"dominated": dict(marker="o", s=16, c=_COLOURS["dominated"], label="feasible, dominated"),
             "infeasible": dict(marker="x", s=24, c=_COLOURS["infeasible"], label="infeasible"),
             "front": dict(marker="o", s=42, c=_COLOURS["front"], edgecolors="k", linewidths=0.6,
                           label="feasible front", zorder=3)}
    placed_x: list[float] = []
    placed_y: list[float] = []
    for kind in ("dominated", "infeasible", "front"):
        both = [(x, y) for x, y, _ in pts[kind] if x is not None and y is not None]
        kw = dict(style[kind])
        # front: its members; a later trial of a member's candidate is drawn with it, not counted
        count = len({n for _, _, n in pts[kind] if kind != "front" or n in members}) if members else len(
            pts[kind])
        kw["label"] = f"{kw['label']} ({count})"
        if both:
            ax.scatter([p[0] for p in both], [p[1] for p in both], **kw)
            placed_x += [p[0] for p in both]
            placed_y += [p[1] for p in both]
        bottom = [x for x, y, _ in pts[kind] if y is None and x is not None]
        left = [y for x, y, _ in pts[kind] if x is None and y is not None]
        if bottom:
            ax.scatter(bottom, [0.0] * len(bottom), marker="|", s=110, c=_COLOURS[kind], clip_on=False,
                       transform=blended_transform_factory(ax.transData, ax.transAxes),
                       label=None if both else kw["label"] + ", not evaluated: on the edge")
        if left:
            ax.scatter([0.0] * len(left), left, marker="_", s=110, c=_COLOURS[kind], clip_on=False,
                       transform=blended_transform_factory(ax.transAxes, ax.transData),
                       label=None if both or bottom else kw["label"] + ", not evaluated: on the edge")
    at = next(((x, y) for x, y, n in pts["front"] if n == knee_trial and x is not None and y is not None),
              None)
    if at is not None:
        ax.scatter([at[0]], [at[1]], marker="*", s=260, c=_COLOURS["knee"], edgecolors="k", linewidths=0.7,
                   zorder=4, label=f"knee (trial {knee_trial})")
    if x_obj is not None:
        _maybe_log(ax, placed_x, "x")
        ax.set_xlabel(_label(x_obj), fontsize=9)
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial", fontsize=9)
    _maybe_log(ax, placed_y, "y")
    if at is not None:  # the label on the side of the star with room for it
        ax.autoscale_view()
        fx, fy = ax.transAxes.inverted().transform(ax.transData.transform(at))
        ax.annotate(f"knee #{knee_trial}", at, xytext=(-8 if fx > 0.75 else 8, -12 if fy > 0.85 else 8),
                    textcoords="offset points", fontsize=8, ha="right" if fx > 0.75 else "left")
    ax.set_ylabel(_label(y_obj), fontsize=9)
    ax.set_title(f"{y_obj.name} vs {x_obj.name if x_obj else 'trial'}", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.13, top=0.92)  # tight_layout draws twice
    return _png(fig)


def hypervolume_plot(hist: Sequence[tuple[int, float]]) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.step([n for n, _ in hist], [hv for _, hv in hist], where="post", c="tab:blue")
    ax.plot([n for n, _ in hist], [hv for _, hv in hist], "o", ms=3, c="tab:blue")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("finished trials", fontsize=9)
    ax.set_ylabel("hypervolume", fontsize=9)
    ax.set_title("hypervolume after each finished trial", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.15, top=0.9)
    return _png(fig)


def scheme_letters(schemes: Sequence[str]) -> dict[str, str]:
    """Each scheme's shortest prefix that no other scheme of ``schemes`` shares."""
    names = sorted(set(schemes))
    out = {}
    for s in names:
        n = 1
        while n < len(s) and any(o != s and o.startswith(s[:n]) for o in names):
            n += 1
        out[s] = s[:n]
    return out


def bits_heatmap(records: Sequence[Mapping[str, Any]], knee_trial: int | None) -> tuple[bytes, str]:
    """Rows: front members; columns: layer groups (in plan order); colour: w_bits (one colour
    per value present); each cell reads its scheme's letter where the front mixes schemes,
    and the activation bits where those differ. Returns the PNG and a legend line."""
    import numpy as np
    from matplotlib.colors import ListedColormap

    plt = _plt()
    groups = list(dict.fromkeys(g for r in records for g in r["plan"]))
    layers = [lq for r in records for lq in r["plan"].values()]
    letters = scheme_letters([lq["quantizer"] for lq in layers])
    show_scheme = len(letters) > 1
    show_a = len({lq.get("a_bits", 8) for lq in layers}) > 1
    values = sorted({lq["w_bits"] for lq in layers})

    def bits(b: int) -> str:
        return "fp" if b == FLOAT_BITS else str(b)

    grid = np.full((len(records), len(groups)), np.nan)
    text = [["" for _ in groups] for _ in records]
    for i, r in enumerate(records):
        for j, g in enumerate(groups):
            lq = r["plan"].get(g)
            if lq is None:
                continue  # this member's architecture has no such group: a grey cell
            grid[i, j] = values.index(lq["w_bits"])
            text[i][j] = ((letters[lq["quantizer"]] if show_scheme else "") + bits(lq["w_bits"])
                          + (f"/{bits(lq.get('a_bits', 8))}" if show_a else ""))
    row_labels = [f"#{r['trial']}" + (" (knee)" if r["trial"] == knee_trial else "") for r in records]
    left = 0.25 + _text_in(max(len(x) for x in row_labels), 8)
    bottom = 0.3 + 0.72 * _text_in(max(len(g) for g in groups), 8)  # labels at 45 degrees
    width = min(18.0, left + 1.4 + 0.72 * len(groups))
    height = min(30.0, bottom + 0.45 + 0.32 * len(records))
    fig, ax = plt.subplots(figsize=(width, height))
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0.0, 1.0, len(values)))).with_extremes(
        bad="0.92")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto", vmin=-0.5,
                   vmax=len(values) - 0.5)
    fontsize = 8 if len(groups) <= 16 and len(records) <= 40 else 6
    for i in range(len(records)):
        for j in range(len(groups)):
            if text[i][j]:
                red, green, blue, _ = cmap(int(grid[i, j]))
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
                ax.text(j, i, text[i][j], ha="center", va="center", fontsize=fontsize,
                        color="white" if dark else "black")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(records)))
    ax.set_yticklabels(row_labels, fontsize=8)
    ax.set_title("w_bits" + ("/a_bits" if show_a else "") + " per layer group", fontsize=9)
    _margins(fig, left, 1.0, bottom, 0.35)
    cbar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03, ticks=range(len(values)))
    cbar.ax.set_yticklabels([bits(b) for b in values], fontsize=8)
    cbar.set_label("w_bits", fontsize=8)
    legend = ("cell: " + ("scheme letter, then " if show_scheme else "") + "weight bits"
              + (" / activation bits" if show_a else "") + ("; fp: float" if FLOAT_BITS in values else ""))
    if show_scheme:
        pairs = sorted(letters.items(), key=lambda x: x[1])
        legend += "; schemes: " + ", ".join(f"{v} = {k}" for k, v in pairs)
    else:
        legend += f"; every group uses scheme {next(iter(letters))}"
    return _png(fig), legend


def _short(name: str, n: int = 34) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1):]


def per_layer_bars(members: Sequence[tuple[str, Mapping[str, Any]]], field: str) -> bytes:
    """One horizontal bar chart of ``field`` per layer for each (title, record)."""
    plt = _plt()
    n_layers = max(1, *(len(r["cost"]["per_layer"]) for _, r in members))
    label_in = 0.2 + _text_in(max((len(_short(k)) for _, r in members for k in r["cost"]["per_layer"]),
                                  default=4), 7)
    panel = 4.0 + label_in
    fig, axes = plt.subplots(1, len(members), figsize=(panel * len(members), 1.4 + 0.2 * n_layers),
                             squeeze=False)
    for ax, (title, r) in zip(axes[0], members, strict=True):
        names = list(r["cost"]["per_layer"])
        vals = [float(r["cost"]["per_layer"][k].get(field, 0.0)) for k in names]
        total = sum(vals)
        ax.barh(range(len(names)), vals, color="tab:blue")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([_short(k) for k in names], fontsize=7)
        ax.invert_yaxis()  # execution order, top to bottom
        ax.set_xlabel(field, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"{title}\n{field} total {total:.3g}", fontsize=9)
        ax.xaxis.get_offset_text().set_fontsize(7)
        ax.grid(axis="x", alpha=0.3)
    _margins(fig, label_in, 0.25, 0.5, 0.5)
    fig.subplots_adjust(wspace=(label_in + 0.3) / (panel - label_in - 0.3))
    return _png(fig)


# ---------------------------------------------------------------- text


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {type(v).__name__}")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _toml_table(d: Mapping[str, Any], prefix: str) -> list[str]:
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in d.items()
             if not isinstance(v, Mapping) and not _is_table_array(v)]
    for k, v in d.items():
        name = f"{prefix}.{_toml_key(k)}" if prefix else _toml_key(k)
        if isinstance(v, Mapping):
            lines += ["", f"[{name}]", *_toml_table(v, name)]
        elif _is_table_array(v):
            for x in v:
                lines += ["", f"[[{name}]]", *_toml_table(x, name)]
    return lines


def spec_text(spec: StudySpec) -> tuple[str, str]:
    """The spec as stored on the study (no storage URL: it may hold a password), as TOML
    when it reads back the same, else as JSON; (language, text)."""
    d = spec.to_dict(include_storage=False)
    try:
        text = "\n".join(_toml_table(d, "")).strip() + "\n"
        if tomllib.loads(text) == json.loads(json.dumps(d)):
            return "toml", text
    except (TypeError, ValueError):
        pass
    return "json", json.dumps(d, indent=2) + "\n"


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _img(png: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{_e(alt)}">'


def _commands(run: str, trial: int, study_arg: str | None, fmt: str | None) -> list[str]:
    tail = f" --study {shlex.quote(study_arg)}" if study_arg else ""
    cmds = [f"bitnas rebuild {shlex.quote(run)} --trial {trial}{tail}"]
    if fmt:
        cmds.append(f"bitnas export {shlex.quote(run)} --trial {trial} --format {fmt}{tail}")
    return cmds


def export_format(space: str) -> str | None:
    """The format the front table's export commands name: the space's ``export_format`` where
    it is registered and its package installed, else ``torch`` (which takes every space);
    None where none is registered."""
    names = set(EXPORTERS.names())
    cls = SPACES.get(space) if space in SPACES.names() else None
    # a spiking space that names no format of its own: torch (onnx refuses neurons)
    preferred = None if cls is None else "torch" if cls.spiking and cls.export_format == "onnx" \
        else cls.export_format
    for fmt in (preferred, "torch"):
        if fmt in names:
            try:
                EXPORTERS.create(fmt)  # a format whose package is missing refuses here
            except BitnasError:
                continue
            return fmt
    return next(iter(sorted(names)), None)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.6em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.meta { color: #555; font-size: 0.9em; }
.figs { display: flex; flex-wrap: wrap; gap: 0.8em; } .figs img { max-width: 100%; height: auto; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.knee td { background: #fff4e0; } tr:target td { background: #e0efff; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; }
td code { display: block; white-space: nowrap; } td.plan { max-width: 28em; word-break: break-word; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; border: 1px solid #eee; }
.bar { background: #4a90d9; height: 0.8em; display: inline-block; vertical-align: middle; }
.note { color: #666; font-style: italic; }
"""


# ---------------------------------------------------------------- the page


def build_report(study: optuna.Study, spec: StudySpec, *, run: str, study_arg: str | None = None,
                 storage: str | None = None) -> str:
    """The report of ``study`` as one HTML document. ``run``: how the front table's
    commands name the run (its directory, file or storage URL); ``study_arg``: the
    --study those commands pass, if any; ``storage``: shown in the header (masked)."""
    trials = _finished(study)
    if not trials:
        raise BitnasError(f"study {study.study_name!r} has no finished trial yet; run `bitnas search` "
                          "on it (or wait for its first trial) and try again")
    _check_trials(study, trials)
    objectives = list(spec.objectives)
    front = front_trials(study)
    records = [member_record(t, objectives) for t in front]
    front_keys = {candidate_key(t.user_attrs["candidate"]) for t in front}
    k = knee(records, objectives)
    knee_trial = k["trial"] if k is not None else None
    pruned = sum(1 for t in trials if t.state == TrialState.PRUNED)
    violating = sum(1 for t in trials if t.state == TrialState.COMPLETE and not is_feasible(t))
    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    fmt = export_format(spec.space["name"])
    n_figs = 0
    out: list[str] = []
    add = out.append

    title = f"bitnas report: {study.study_name}"
    add("<!DOCTYPE html>")
    add('<html lang="en"><head><meta charset="utf-8">')
    add('<meta name="viewport" content="width=device-width, initial-scale=1">')
    add(f"<title>{_e(title)}</title><style>{CSS}</style></head><body>")
    add(f"<h1>{_e(title)}</h1>")
    now = datetime.datetime.now().isoformat(timespec="seconds")
    state = (f"{len(trials)}/{spec.trials} trials finished" + (f", {running} running now" if running else "")
             + (" (a snapshot: the study has not reached its budget)" if len(trials) < spec.trials else ""))
    add(f'<p class="meta">{_e(state)}; {len(trials) - pruned - violating} feasible, {pruned} '
        f"infeasible by cost (never evaluated), {violating} breaking a metric bound. "
        f"Strategy <b>{_e(spec.sampler)}</b>, seed {spec.seed}, space {_e(spec.space['name'])}, "
        f"task {_e(spec.task['name'])}, hardware {_e(spec.hardware['name'])}."
        + (f" Storage {_e(storage)}." if storage else "")
        + f" Written {_e(now)} by bitnas {_e(__version__)}.</p>")

    add('<h2 id="summary">Summary</h2><ul>')
    add(f"<li>{len(records)} front member(s) of {len(trials)} finished trials "
        f"(objectives: {_e(', '.join(f'{o.name} ({o.direction})' for o in objectives))}).</li>")
    if k is not None:
        vals = ", ".join(f"{o.name} = {format_value(k['values'][o.name])}" for o in objectives)
        add(f'<li>Knee: <a href="#trial-{knee_trial}">trial {knee_trial}</a> ({_e(vals)}), the member '
            "closest to the ideal point once each objective is scaled to [0, 1] over the front.</li>")
    else:
        add("<li>No feasible trial yet: the front is empty.</li>")
    add(f"<li>{_e(front_hypervolume(study, objectives))}.</li></ul>")

    add('<h2 id="front">Pareto front</h2><div class="figs">')
    pairs: list[tuple[int, int | None]] = (list(combinations(range(len(objectives)), 2))
                                           if len(objectives) > 1 else [(0, None)])
    for y_i, x_i in pairs:
        png = pair_scatter(trials, objectives, front_keys, y_i, x_i, knee_trial, {t.number for t in front})
        other = objectives[x_i].name if x_i is not None else "trial"
        add(_img(png, f"{objectives[y_i].name} against {other}"))
        n_figs += 1
    add("</div>")
    add('<p class="note">Blue: the feasible front; grey: feasible but dominated; red crosses: infeasible '
        "(over a cost bound, so never evaluated, or breaking a metric bound); ticks on an edge: "
        "infeasible trials with no value for that axis's metric; orange star: the knee.</p>")

    add('<h2 id="hypervolume">Hypervolume</h2>')
    reference = study_reference(study, objectives)
    if reference is None:
        add('<p class="note">The study declares no hypervolume reference point (made by an older '
            "bitnas), so its hypervolume history is not drawn.</p>")
    else:
        hist = history(study, objectives, reference)
        ref = ", ".join(f"{o.name} = {v:.4g}" for o, v in zip(objectives, reference, strict=True))
        add(f"<p>The volume the feasible trials so far dominate, up to the study's reference point "
            f"({_e(ref)}); it never falls.</p>")
        add(_img(hypervolume_plot(hist), "hypervolume after each finished trial"))
        n_figs += 1

    add('<h2 id="members">Front members</h2>')
    if records:
        add(_front_table(records, objectives, knee_trial, run, study_arg, fmt))
    else:
        add('<p class="note">No feasible trial yet.</p>')

    add('<h2 id="bits">Bits per layer group</h2>')
    if records:
        png, legend = bits_heatmap(records, knee_trial)
        add(f"<p>One row per front member, one column per layer group ({_e(legend)}; grey: the "
            "member's architecture has no such group).</p>")
        add(_img(png, "weight bits per layer group across the front"))
        n_figs += 1
    else:
        add('<p class="note">No front member yet.</p>')

    add('<h2 id="per-layer">Per-layer cost</h2>')
    field = _per_layer_field(records) if records else None
    if field is not None and k is not None:
        cheapest = min(records, key=lambda r: (_layer_total(r, field), r["trial"] != knee_trial, r["trial"]))
        if cheapest["trial"] == knee_trial:
            members = [(f"trial {knee_trial} (knee, and the cheapest)", k)]
        else:
            members = [(f"trial {knee_trial} (knee)", k), (f"trial {cheapest['trial']} (cheapest)", cheapest)]
        add(f"<p>{_e(field)} of each layer, in execution order, for the knee and for the front member "
            f"with the lowest total {_e(field)}.</p>")
        add(_img(per_layer_bars(members, field), f"per-layer {field}"))
        n_figs += 1
    else:
        add('<p class="note">No front member with a per-layer cost yet.</p>')

    add('<h2 id="timing">Where the time went</h2>')
    add(_timing_table(trials))

    lang, text = spec_text(spec)
    add(f'<h2 id="spec">Spec and strategy</h2><p>Strategy <b>{_e(spec.sampler)}</b> (as stored when the '
        "study was created; a later run may override it with <code>--strategy</code>). The spec stored "
        f"on the study ({lang.upper()}, storage URL left out):</p>")
    add(f"<pre>{_e(text)}</pre>")
    add(f"<!-- figures: {n_figs} -->")
    add("</body></html>")
    return "\n".join(out) + "\n"


def _front_table(records: Sequence[Mapping[str, Any]], objectives: Sequence[Objective],
                 knee_trial: int | None, run: str, study_arg: str | None, fmt: str | None) -> str:
    size = "weight_bytes" not in [o.name for o in objectives]  # the model's size, unless an objective
    head = ["trial", *[o.name for o in objectives], *(["weight_bytes"] if size else []), "arch",
            f"plan ({PLAN_LEGEND})", "rebuild / export"]
    rows = ["<table><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in records:
        n = r["trial"]
        cls = ' class="knee"' if n == knee_trial else ""
        cells = [f'<td><a href="#trial-{n}">{n}</a>{" (knee)" if n == knee_trial else ""}</td>']
        cells += [f'<td class="num">{_e(format_value(r["values"][o.name]))}</td>' for o in objectives]
        if size:
            cells.append(f'<td class="num">{_e(r["cost"]["weight_bytes"])}</td>')
        cells.append(f"<td>{_e(describe_arch(r['arch']))}</td>")
        cells.append(f'<td class="plan">{_e(describe_plan(r["plan"]))}</td>')
        cells.append("<td>" + "".join(f"<code>{_e(c)}</code>" for c in _commands(run, n, study_arg, fmt))
                     + "</td>")
        rows.append(f'<tr id="trial-{n}"{cls}>' + "".join(cells) + "</tr>")
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _timing_table(trials: Sequence[FrozenTrial]) -> str:
    split = timing_split(trials)
    total = sum(s for _, s in split)
    if not split or total <= 0:
        return '<p class="note">The trials recorded no timing.</p>'
    rows = ["<table><thead><tr><th>phase</th><th>seconds (all trials)</th><th>per trial</th>"
            "<th>share</th></tr></thead><tbody>"]
    for key, s in split:
        label = TIMING_LABELS.get(key, "other (sampler, storage, framework)" if key == "other_s" else key)
        share = s / total
        rows.append(f"<tr><td>{_e(label)} <code>{_e(key)}</code></td><td class=\"num\">{s:.3f}</td>"
                    f'<td class="num">{s / len(trials):.4f}</td><td class="num">{share:.1%} '
                    f'<span class="bar" style="width:{share * 8:.2f}em"></span></td></tr>')
    rows.append(f'<tr><th>total</th><th class="num">{total:.3f}</th>'
                f'<th class="num">{total / len(trials):.4f}</th><th class="num">100%</th></tr>')
    rows.append("</tbody></table>")
    return "\n".join(rows)


def write_report(study: optuna.Study, spec: StudySpec, path: Path, *, run: str,
                 study_arg: str | None = None, storage: str | None = None) -> Path:
    """Write the report at ``path`` atomically (see :func:`build_report`); return ``path``."""
    text = build_report(study, spec, run=run, study_arg=study_arg, storage=storage)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path


def try_write_report(study: optuna.Study, spec: StudySpec, path: Path, *, run: str,
                     storage: str | None = None,
                     log: Callable[[str], None] | None = None) -> Path | None:
    """:func:`write_report` at the end of a search: a failure is one warning line (the
    study and the front files are written already), never an error; None then."""
    try:
        return write_report(study, spec, path, run=run, storage=storage)
    except Exception as e:  # the report is a view: a finished search must not fail for it
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        (log or (lambda m: print(m, file=sys.stderr, flush=True)))(
            f"bitnas: warning: could not write {path} ({first}); `bitnas report {shlex.quote(run)}` "
            "tries again")
        return None
