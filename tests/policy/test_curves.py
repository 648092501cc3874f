"""`rtcbench policy curves`: short titles, axes that do not magnify noise, validation loss and solve rates.

Drawn from the shipped sidecars' real training histories (no training here) and, for an expert, from a
history shaped exactly as `rtcbench.policy.expert.train_population` writes it."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from rtcbench.policy.curves import curves_title, draw_curves, evals_from_sidecar, histories_from_sidecar

REPO = Path(__file__).resolve().parents[2]
SHIPPED_TTRTC = REPO / "policies" / "multiexpert" / "l_h17_unicycle_packed" / "ttrtc.json"


def _panels(fig) -> dict[str, object]:
    """Axes by y label."""
    return {ax.get_ylabel(): ax for ax in fig.axes}


def test_curves_of_a_shipped_sidecar(tmp_path, monkeypatch):
    from rtcbench.cli.main import main

    meta = json.loads(SHIPPED_TTRTC.read_text())
    monkeypatch.chdir(REPO)
    title = curves_title(Path("policies/multiexpert/l_h17_unicycle_packed/ttrtc.json"), meta)
    assert title == "l/h17_unicycle:packed ttrtc: policies/multiexpert/l_h17_unicycle_packed/ttrtc.json"
    assert curves_title(SHIPPED_TTRTC, meta) == title  # an absolute path is shown relative to the working dir
    elsewhere = curves_title(SHIPPED_TTRTC, meta, cwd=tmp_path)  # outside the working dir: the last three parts
    assert elsewhere == "l/h17_unicycle:packed ttrtc: multiexpert/l_h17_unicycle_packed/ttrtc.json"
    assert str(REPO) not in title + elsewhere

    evals = evals_from_sidecar(meta)
    assert [(e["label"], e["rate"]) for e in evals] == [
        ("d=0 s=4", meta["solve_rate"]["rate"]), ("ttrtc d=4 s=4", meta["solve_rate_ttrtc_d4_s4"]["rate"])]
    assert all(e["low"] <= e["rate"] <= e["high"] for e in evals)
    fig = draw_curves(histories_from_sidecar(meta), title=title, evals=evals)
    try:
        panels = _panels(fig)
        assert fig._suptitle.get_text() == title
        assert set(panels) == {"bc flow-matching loss (log)", "ttrtc flow-matching loss (log)",
                               "closed-loop solve rate (Wilson 95%)"}
        ttrtc = panels["ttrtc flow-matching loss (log)"]
        losses = [r["loss"] for r in meta["training"]["ttrtc"]["history"]]
        assert max(losses) / min(losses) < 1.01  # this stage's loss hardly moved ...
        low, high = ttrtc.get_ylim()
        assert high / low >= 2.0 - 1e-9  # ... and is drawn flat, not across the whole axis
        assert low <= min(losses) and max(losses) <= high
        solve = panels["closed-loop solve rate (Wilson 95%)"]
        assert [t.get_text() for t in solve.get_xticklabels()] == ["d=0 s=4", "ttrtc d=4 s=4"]
    finally:
        plt.close(fig)

    code = main(["policy", "curves", "policies/multiexpert/l_h17_unicycle_packed/ttrtc.json", "--out",
                 str(tmp_path / "c")])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "multiexpert_l_h17_unicycle_packed_ttrtc.png", "multiexpert_l_h17_unicycle_packed_ttrtc.svg"]


def test_a_flat_loss_and_a_flat_reward_are_drawn_flat():
    flow = [{"epoch": e, "loss": 1.0 + 1e-4 * e, "wall_s": 10.0 * e} for e in (1, 2)]  # a 0.01 % change
    # as train_population writes an expert's history: one record per block
    expert = [{"update": 4 * k, "steps": 16384 * k, "train_solve_frac": 0.1 * k, "episodes": 300.0,
               "reward": -1.82 + 1e-4 * k, "wall_s": 20.0 * k} for k in (1, 2, 3)]
    fig = draw_curves({"expert": [{"stage": "expert", **r} for r in expert],
                       "bc": [{"stage": "bc", **r} for r in flow]})
    try:
        panels = _panels(fig)
        low, high = panels["bc flow-matching loss (log)"].get_ylim()
        assert high / low == pytest.approx(2.0)
        low, high = panels["shaped training reward per rollout"].get_ylim()
        assert high - low == pytest.approx(0.2 * 1.8199)  # 20 % of the largest |reward|
        assert panels["training solve rate"].get_ylim() == pytest.approx((-0.02, 1.02))
    finally:
        plt.close(fig)


def test_validation_loss_and_eval_solve_rate_are_drawn_when_recorded():
    history = [{"stage": "bc", "epoch": e, "loss": 1.4 / e, "val_loss": 1.5 / e, "eval_solve_rate": 0.2 * e,
                "wall_s": 30.0 * e} for e in (1, 2, 3)]
    fig = draw_curves({"bc": history})
    try:
        panels = _panels(fig)
        loss = panels["bc flow-matching loss (log)"]
        assert [line.get_label() for line in loss.get_lines()] == ["train", "validation"]
        assert list(loss.get_lines()[1].get_ydata()) == [1.5, 0.75, 0.5]
        rate = panels["closed-loop eval solve rate"]
        assert list(rate.get_lines()[0].get_ydata()) == pytest.approx([0.2, 0.4, 0.6])
    finally:
        plt.close(fig)
    with pytest.raises(ValueError):
        draw_curves({})
