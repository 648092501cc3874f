"""Training curves: per-block metrics as JSON lines while a policy trains, and a figure of them.

Each training loop appends one JSON object per block to a ``metrics.jsonl`` file and flushes it, so
``tail -f`` (or any plotting tool) follows a run that takes minutes:

    expert (one file per seed, ``<expert dir>/metrics.jsonl``)
        {"stage": "expert", "seed": 0, "update": 4, "steps": 65536, "train_solve_frac": 0.13,
         "episodes": 1587.0, "reward": -1.82, "wall_s": 107.7}
    flow policy (``<work dir>/<label>_metrics.jsonl``; label bc or ttrtc)
        {"stage": "bc", "epoch": 1, "loss": 1.39, "wall_s": 42.2}

The lines are the same records the sidecar keeps in its ``history``; a resumed run rewrites the file from
the sidecar's history first, so the file never holds a block twice. ``plot_curves`` draws them (reward
and training solve rate against environment steps for experts, loss against epoch for flow policies)
as PNG and SVG; ``rtcbench policy curves SIDECAR`` draws the curves of any checkpoint whose sidecar has a
history, shipped ones included, with the sidecar's final closed-loop evaluations (``solve_rate``,
``solve_rate_naive_d4_s4``, ...: rate and Wilson 95 % interval, `evals_from_sidecar`) in a panel of their own.
A record that also holds ``val_loss`` (validation loss) or ``eval_solve_rate`` (a closed-loop solve rate
measured during training) has them drawn too; the training loops write neither today (one loss per epoch, and
the closed-loop evaluation once, at the end, into the sidecar).

Axes do not magnify noise: a loss axis (log scale) spans at least a factor `MIN_LOSS_FACTOR`, a reward axis
at least `MIN_REWARD_SPAN` of the values' magnitude, and rates are drawn on [0, 1].
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

MIN_LOSS_FACTOR = 2.0  # the loss axis spans at least max / min = 2 (a flat loss is drawn flat)
MIN_REWARD_SPAN = 0.2  # a reward axis spans at least 20 % of the largest |reward| (or 0.1 when all are 0)


def write_metrics(path: Path, records: list[dict]) -> None:
    """(Re)write the whole file from a history (used when a run starts or resumes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    tmp.replace(path)


def append_metrics(path: Path, record: dict) -> None:
    """One block's metrics as one JSON line, flushed at once."""
    with path.open("a") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def histories_from_sidecar(meta: dict) -> dict[str, list[dict]]:
    """A checkpoint sidecar -> {stage: history records}: an expert's own ``history``, or the ``bc`` and
    ``ttrtc`` stages under ``training`` of a flow policy."""
    out = {}
    if isinstance(meta.get("history"), list) and meta["history"]:
        out["expert"] = [{"stage": "expert", **r} for r in meta["history"]]
    for stage, info in (meta.get("training") or {}).items():
        if isinstance(info, dict) and isinstance(info.get("history"), list) and info["history"]:
            out[stage] = [{"stage": stage, **r} for r in info["history"]]
    return out


def evals_from_sidecar(meta: dict) -> list[dict]:
    """A sidecar's final closed-loop evaluations -> [{label, rate, low, high, n}]: ``solve_rate`` (the delay-0
    evaluation) first, then every ``solve_rate_*`` (e.g. ``solve_rate_naive_d4_s4``, an expert's
    ``solve_rate_obs_lag2``), each a rate with its Wilson 95 % interval."""
    out = []
    for key in sorted(k for k in meta if k == "solve_rate" or k.startswith("solve_rate_")):
        value = meta[key]
        if not isinstance(value, dict) or not isinstance(value.get("rate"), int | float):
            continue
        if key == "solve_rate":
            label = f"d={value.get('delay', 0)}" + (f" s={value['horizon']}" if "horizon" in value else "")
        else:
            label = " ".join(re.sub(r"^(d|s|lag)(\d+)$", r"\1=\2", part)
                             for part in key.removeprefix("solve_rate_").split("_"))  # naive d=4 s=4, obs lag=2
        rate = float(value["rate"])
        low, high = (value.get("wilson95") or [rate, rate])[:2]
        # older sidecars stored 1 - 1e-16 as the upper bound at n/n: the interval always holds its rate
        out.append({"label": label, "rate": rate, "low": min(float(low), rate), "high": max(float(high), rate),
                    "n": value.get("n")})
    return out


def curves_title(sidecar: Path, meta: dict, cwd: Path | None = None) -> str:
    """``LEVEL KIND: FOLDER/NAME``: the sidecar's path relative to `cwd` (default: the working directory) when it
    lies under it, else its last three parts, never an absolute path."""
    sidecar = Path(sidecar)
    cwd = Path.cwd() if cwd is None else cwd
    try:
        shown = sidecar.resolve().relative_to(cwd.resolve()).as_posix()
    except ValueError:
        shown = "/".join(sidecar.resolve().parts[-3:])
    level = meta.get("level") or (meta.get("config") or {}).get("level") or ""
    kind = meta.get("kind") or sidecar.stem
    return f"{level} {kind}: {shown}".strip()


def _floor_span(ax, values: list[float], *, log: bool) -> None:
    """Widen the y axis to the minimum span (module docstring), centred on the values, so that a change of
    0.02 % does not fill the axis."""
    finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v) and (v > 0 or not log)]
    if not finite:
        return
    lo, hi = min(finite), max(finite)
    if log:
        if hi / lo < MIN_LOSS_FACTOR:
            centre = math.sqrt(lo * hi)
            ax.set_ylim(centre / math.sqrt(MIN_LOSS_FACTOR), centre * math.sqrt(MIN_LOSS_FACTOR))
        return
    span = MIN_REWARD_SPAN * max(abs(lo), abs(hi)) or 0.1
    if hi - lo < span:
        centre = (lo + hi) / 2
        ax.set_ylim(centre - span / 2, centre + span / 2)


def draw_curves(histories: dict[str, list[dict]], *, title: str = "", evals: list[dict] | None = None):
    """The curves as a matplotlib Figure (see `plot_curves`); one panel per drawn quantity."""
    import textwrap

    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def has(stage: str, key: str) -> bool:
        return any(key in r for r in histories[stage])

    panels = []  # (stage, x key, [(y key, legend)], y label, kind)
    for stage in histories:
        if stage == "expert":
            x_key = "steps"
            panels.append((stage, x_key, [("reward", "")], "shaped training reward per rollout", "reward"))
            panels.append((stage, x_key, [("train_solve_frac", "")], "training solve rate", "rate"))
        else:
            x_key = "epoch"
            lines = [("loss", "train" if has(stage, "val_loss") else "")]
            lines += [("val_loss", "validation")] if has(stage, "val_loss") else []
            panels.append((stage, x_key, lines, f"{stage} flow-matching loss (log)", "loss"))
        if has(stage, "eval_solve_rate"):
            panels.append((stage, x_key, [("eval_solve_rate", "")], "closed-loop eval solve rate", "rate"))
    if not panels:
        raise ValueError("no history to draw")
    n_panels = len(panels) + bool(evals)
    fig, axes = plt.subplots(1, n_panels, figsize=(4.6 * n_panels, 3.6), squeeze=False)
    colors = ("#0072B2", "#D55E00")
    for ax, (stage, x_key, lines, label, kind) in zip(axes[0], panels, strict=False):
        drawn = []
        for (y_key, legend), color in zip(lines, colors, strict=False):
            records = [r for r in histories[stage] if x_key in r and isinstance(r.get(y_key), int | float)]
            ax.plot([r[x_key] for r in records], [r[y_key] for r in records], marker="o", markersize=2.5,
                    linewidth=1.4, color=color, label=legend or None, linestyle="-" if y_key != "val_loss" else "--")
            drawn += [float(r[y_key]) for r in records]
        if x_key == "steps":
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1e6:g}M"))
            ax.set_xlabel("environment steps (per seed)")
        else:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if kind == "loss":
            ax.set_yscale("log")
            _floor_span(ax, drawn, log=True)
        elif kind == "reward":
            _floor_span(ax, drawn, log=False)
        else:
            ax.set_ylim(-0.02, 1.02)
        if lines[0][0] == "train_solve_frac":
            ax.axhline(0.65, color="0.4", linestyle=":", linewidth=1)
            ax.text(ax.get_xlim()[0], 0.66, " 0.65: qualifies for the data mixture", fontsize=7, color="0.3",
                    va="bottom")
        if any(legend for _, legend in lines):
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax.set_title(stage, fontsize=9)
    if evals:
        ax = axes[0][-1]
        xs = range(len(evals))
        rates = [e["rate"] for e in evals]
        ax.errorbar(xs, rates, yerr=[[r - e["low"] for r, e in zip(rates, evals, strict=True)],
                                     [e["high"] - r for r, e in zip(rates, evals, strict=True)]],
                    fmt="o", color="#009E73", capsize=3)
        for x, e in zip(xs, evals, strict=True):
            ax.annotate(f"{e['rate']:.3f}", (x, e["rate"]), textcoords="offset points", xytext=(6, -3), fontsize=7)
        ax.set_xticks(list(xs), [e["label"] for e in evals], fontsize=7)
        ax.set_xlim(-0.6, len(evals) - 0.4)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("closed-loop solve rate (Wilson 95%)")
        ax.grid(alpha=0.3, axis="y")
        ax.set_title("final evaluation", fontsize=9)
    if title:
        fig.suptitle("\n".join(textwrap.wrap(title, width=int(12 * 4.6 * n_panels))), fontsize=10)
    fig.tight_layout()
    return fig


def plot_curves(histories: dict[str, list[dict]], out_stem: Path, *, title: str = "",
                evals: list[dict] | None = None) -> list[Path]:
    """Draw each stage in its own panel(s) -> [PNG, SVG] at ``out_stem`` + suffix. Experts: reward and
    training solve rate against environment steps; flow policies: loss (and validation loss where recorded)
    against epoch (log y); `evals` (`evals_from_sidecar`): the final closed-loop solve rates."""
    import matplotlib.pyplot as plt

    fig = draw_curves(histories, title=title, evals=evals)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
