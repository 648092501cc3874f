"""The confirmatory study's registered rules (rtcbench.study.confirm) on hand-built paired outcomes whose
verdicts are known: which p each row uses, Holm over the S rows that were run, the at-least-as-much rows,
and h4's decomposition rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from rtcbench.study.confirm import family_verdict, h4_decomposition, judge_level, registered_rows
from rtcbench.study.runs import RunData

LEVEL = "l/h4_cartpole:packed"
N = 400


def _run(solves: dict[tuple[str, str], np.ndarray], jerk: dict[tuple[str, str], np.ndarray] | None = None) -> RunData:
    """A RunData of one level whose cells hold the given per-rollout solves (and jerk_mean_d2)."""
    cells, outcomes = [], {}
    for i, ((setup, method), solved) in enumerate(solves.items()):
        cid = f"c{i}"
        rate = float(solved.mean())
        cells.append({"cell_id": cid, "level": LEVEL, "setup": setup, "method": method, "solve_rate": rate,
                      "solve_ci_low": rate, "solve_ci_high": rate, "n_rollouts": N})
        j = (jerk or {}).get((setup, method), np.ones(N))
        outcomes[cid] = pd.DataFrame({"rollout": np.arange(N), "solved": solved.astype(bool), "jerk_mean_d2": j})
    return RunData([pd.Series({"run_id": "r"})], pd.DataFrame(cells), outcomes)


def _solves(rate: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(N) < rate


def test_headline_uses_raw_p_and_secondary_rows_use_holm_over_the_rows_run():
    naive_o, soft_o = _solves(0.5, 1), _solves(0.5, 1) | _solves(0.3, 2)  # soft solves every naive solve and more
    soft_w = soft_o & _solves(0.9, 3)  # window-max loses ~10% of soft's solves
    soft_q = soft_o & _solves(0.97, 4)
    data = _run({("lt5.adaptive.oracle", "naive"): naive_o, ("lt5.adaptive.oracle", "rtc_exp"): soft_o,
                 ("lt5.adaptive.wmax", "naive"): naive_o, ("lt5.adaptive.wmax", "rtc_exp"): soft_w,
                 ("lt5.adaptive.wq95", "rtc_exp"): soft_q})
    verdicts, missing = judge_level(data, LEVEL)
    by_label = {v.judged.row.label: v for v in verdicts}
    h0 = by_label["lt5, oracle: rtc_exp - naive"]
    assert h0.p_used == h0.judged.p_raw and h0.verdict == "reproduced" and h0.judged.effect > 0.1
    secondary = [v for v in verdicts if v.judged.row.hypothesis != "H0"]
    # Run here: S1 (two forecasts), S2 (gap), S6 (jerk); every other registered row is "not run".
    assert sorted(v.judged.row.hypothesis for v in secondary) == ["S1", "S1", "S2", "S6"]
    assert len(missing) == len(registered_rows()) - len(verdicts)
    expected = multipletests([v.judged.p_raw for v in secondary], method="holm")[1]
    assert np.allclose([v.p_used for v in secondary], expected)
    s1 = by_label["lt5, rtc_exp: wmax - oracle"]
    assert s1.judged.effect < 0 and s1.verdict == "reproduced"  # predicted sign -1
    # S6 compares jerk: all ones here, so no difference and p = 1.
    s6 = next(v for v in secondary if v.judged.row.hypothesis == "S6")
    assert s6.judged.effect == 0 and s6.judged.p_raw == 1.0 and s6.verdict == "not significant"


def test_gap_row_is_the_per_rollout_difference_of_differences_with_a_t_test():
    naive_o, soft_o = _solves(0.5, 5), _solves(0.7, 6)
    naive_w, soft_w = naive_o.copy(), _solves(0.55, 7)
    data = _run({("lt5.adaptive.oracle", "naive"): naive_o, ("lt5.adaptive.oracle", "rtc_exp"): soft_o,
                 ("lt5.adaptive.wmax", "naive"): naive_w, ("lt5.adaptive.wmax", "rtc_exp"): soft_w})
    s2 = next(v for v in judge_level(data, LEVEL)[0] if v.judged.row.hypothesis == "S2")
    diffs = (soft_w.astype(float) - naive_w) - (soft_o.astype(float) - naive_o)
    assert np.isclose(s2.judged.effect, diffs.mean())
    assert np.isclose(s2.judged.p_raw, sps.ttest_1samp(diffs, 0.0).pvalue)


def test_at_least_as_much_rows_hold_unless_significantly_worse():
    base = _solves(0.6, 8)
    slightly_worse = base & _solves(0.97, 9)  # a few discordant pairs: not significant
    much_worse = base & _solves(0.6, 10)
    for cand, expected in ((slightly_worse, "holds (not contradicted)"), (much_worse, "contradicted")):
        data = _run({("bursty.adaptive.wmax", "naive"): base, ("bursty.adaptive.wmax", "rtc_exp"): cand})
        (s9,), _ = judge_level(data, LEVEL)
        assert s9.judged.row.hypothesis == "S9" and s9.judged.effect < 0 and s9.verdict == expected


def test_h4_decomposition_follows_the_registered_branches():
    naive_o = _solves(0.5, 11)
    cases = {"over-forecasting": (naive_o | _solves(0.4, 12), 0.6),  # H0 yes; wmax keeps little of the gain: S2 yes
             "competing explanation stands": (naive_o.copy(), 1.0)}  # soft = naive: H0 not reproduced
    for expected, (soft_o, keep) in cases.items():
        soft_w = (soft_o & _solves(keep, 13)) | naive_o if keep < 1 else soft_o
        data = _run({("lt5.adaptive.oracle", "naive"): naive_o, ("lt5.adaptive.oracle", "rtc_exp"): soft_o,
                     ("lt5.adaptive.wmax", "naive"): naive_o, ("lt5.adaptive.wmax", "rtc_exp"): soft_w})
        text = h4_decomposition(judge_level(data, LEVEL)[0])
        assert expected in text


def _store_run(db, scenario: str, seeds: dict, solves: dict[tuple[str, str], np.ndarray], bc: str = "ab" * 32) -> str:
    """A complete run written through the store API as `rtcbench run` writes one (real DuckDB file)."""
    from store_helpers import cell_row, rollout_columns

    from rtcbench.store import Store

    store = Store.open(db)
    run_id = store.create_run({"scenario": scenario, "config_hash": "cfg", "n_cells_planned": len(solves),
                               "git_commit": "c0ffee", "git_dirty": False})
    for (setup, method), solved in solves.items():
        row = cell_row(run_id, level=LEVEL, method=method, setup=setup, key=f"{setup}-{method}", solved=solved)
        row |= {"scenario": scenario, "cell_config": {"seeds": seeds, "policy_sha256": bc, "method": {"kind": method}}}
        store.write_cell(row, rollout_columns(solved))
    store.finish_run(run_id, status="complete", wall_s=1.0, compile_s=0.0)
    return run_id


def test_study_confirm_judges_the_registered_run_and_refuses_any_other(tmp_path):
    from store_helpers import cli_here

    naive = _solves(0.5, 21)
    solves = {("lt5.adaptive.oracle", "naive"): naive, ("lt5.adaptive.oracle", "rtc_exp"): naive | _solves(0.3, 22)}
    db = tmp_path / "r.duckdb"
    held_out = _store_run(db, "tail_confirm_multiexpert", {"delay": 1001, "env": 1001, "policy": 1001}, solves)
    seen = _store_run(db, "tail_confirm_multiexpert", {"delay": 0, "env": 0, "policy": 0}, solves)
    other = _store_run(db, "tail_matrix", {"delay": 1001, "env": 1001, "policy": 1001}, solves)
    out = tmp_path / "page"
    args = ["study", "--db", str(db), "--skip-sweep", "--skip-tail", "--out", str(out), "--confirm"]
    done = cli_here(*args, held_out)
    assert done.returncode == 0, done.stderr
    page = (out / "README.md").read_text()
    assert "| H0 | lt5, oracle: rtc_exp - naive | > 0 |" in page and "**reproduced**" in page
    assert "held-out seeds 1001/1001/1001" in page and "one training seed" in page
    rows = [line for line in page.splitlines() if line.startswith("| H0 |") or line.startswith("| hyp. |")]
    assert len(rows) == 2 and rows[0].count("|") == rows[1].count("|") == 9  # no stray | inside a cell
    for run_id, why in ((seen, "held-out seeds"), (other, "not the registered")):
        done = cli_here(*args, run_id)
        assert done.returncode == 2 and "--confirm" in done.stderr and why in done.stderr, done.stderr


def test_study_takes_a_prefix_or_latest_and_records_the_full_id(tmp_path):
    from store_helpers import cli_here

    naive = _solves(0.5, 23)
    solves = {("lt5.adaptive.oracle", "naive"): naive, ("lt5.adaptive.oracle", "rtc_exp"): naive}
    db = tmp_path / "r.duckdb"
    run_id = _store_run(db, "tail_confirm_multiexpert", {"delay": 1001, "env": 1001, "policy": 1001}, solves)
    for given in (run_id[:17], "latest"):
        out = tmp_path / given
        done = cli_here("study", "--db", str(db), "--skip-sweep", "--skip-tail", "--out", str(out), "--confirm", given)
        assert done.returncode == 0, done.stderr
        assert f"--confirm {run_id} --out" in (out / "README.md").read_text()


def test_family_verdict_is_the_registered_rule_across_seeds():
    assert family_verdict(["reproduced", "reproduced", "not significant"], "predict") == "reproduced"
    assert family_verdict(["reproduced", "reproduced", "contradicted"], "predict") == "mixed"
    assert family_verdict(["reproduced", "not significant", "not significant"], "predict") == "mixed"
    assert family_verdict(["contradicted", "contradicted", "not significant"], "predict") == "contradicted"
    assert family_verdict(["not significant"] * 3, "predict") == "not significant"
    assert family_verdict(["holds (not contradicted)"] * 2 + ["contradicted"], "not_worse") == "mixed"
    assert family_verdict(["holds (not contradicted)"] * 3, "not_worse") == "holds (not contradicted)"


def test_study_confirm_judges_each_training_seed_and_the_family(tmp_path):
    """Two BC checkpoints (training seeds), each a run of the registered scenario: each seed is judged on its
    own and the family row applies the across-seed rule, with the spread of the effect."""
    from store_helpers import cli_here

    held_out = {"delay": 1001, "env": 1001, "policy": 1001}
    db = tmp_path / "r.duckdb"
    run_ids = []
    for seed, (gain, bc) in enumerate(((0.3, "ab" * 32), (0.0, "cd" * 32))):
        naive = _solves(0.5, 30 + seed)
        soft = naive | _solves(gain, 40 + seed) if gain else naive.copy()
        run_ids.append(_store_run(db, "tail_confirm_multiexpert", held_out,
                                  {("lt5.adaptive.oracle", "naive"): naive, ("lt5.adaptive.oracle", "rtc_exp"): soft},
                                  bc=bc))
    out = tmp_path / "page"
    done = cli_here("study", "--db", str(db), "--skip-sweep", "--skip-tail", "--out", str(out),
                    "--confirm", run_ids[0], "--confirm", run_ids[1])
    assert done.returncode == 0, done.stderr
    page = (out / "README.md").read_text()
    assert "2 training seeds" in page and "seed `abababab`" in page and "seed `cdcdcdcd`" in page
    row = next(line for line in page.splitlines() if line.startswith("| H0 |"))
    assert "**mixed**" in row and "reproduced" in row and "not significant" in row and "+0.000 .. +0." in row
