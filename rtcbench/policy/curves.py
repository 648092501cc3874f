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
history, shipped ones included.
"""

from __future__ import annotations

import json
from pathlib import Path


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


def plot_curves(histories: dict[str, list[dict]], out_stem: Path, *, title: str = "") -> list[Path]:
    """Draw each stage in its own panel(s) -> [PNG, SVG] at ``out_stem`` + suffix. Experts: reward and
    training solve rate against environment steps; flow policies: loss against epoch (log y)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for stage in histories:
        if stage == "expert":
            panels.append((stage, "steps", "reward", "shaped training reward per rollout", False))
            panels.append((stage, "steps", "train_solve_frac", "training solve rate", False))
        else:
            panels.append((stage, "epoch", "loss", f"{stage} flow-matching loss (log)", True))
    if not panels:
        raise ValueError("no history to draw")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4), squeeze=False)
    for ax, (stage, x_key, y_key, label, log_y) in zip(axes[0], panels, strict=True):
        records = [r for r in histories[stage] if x_key in r and y_key in r]
        ax.plot([r[x_key] for r in records], [r[y_key] for r in records], marker="o", markersize=2.5,
                linewidth=1.4, color="#0072B2")
        if x_key == "steps":
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1e6:g}M"))
            ax.set_xlabel("environment steps (per seed)")
        else:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if log_y:
            ax.set_yscale("log")
        if y_key == "train_solve_frac":
            ax.set_ylim(-0.02, 1.02)
            ax.axhline(0.65, color="0.4", linestyle=":", linewidth=1)
            ax.text(ax.get_xlim()[0], 0.66, " 0.65: qualifies for the data mixture", fontsize=7, color="0.3",
                    va="bottom")
        ax.grid(alpha=0.3)
        ax.set_title(stage, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".svg")]
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    plt.close(fig)
    return paths
