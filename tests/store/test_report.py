"""`rtcbench report` on runs without physics: a run with no finished cell, and cells without delay rows."""

import numpy as np
from store_helpers import run_main, write_run

from rtcbench.store import Store


def test_report_of_a_run_without_cells_says_so(db_path, tmp_path, capsys):
    store = Store.open(db_path)
    run_id = write_run(store, [], status="running")
    code, out, err = run_main(capsys, "report", "--db", str(db_path), "--run", run_id, "--out", str(tmp_path / "r"))
    assert code == 0, err
    text = (tmp_path / "r" / "report.md").read_text()
    assert "No cell of this run has finished yet" in text and "This run did not complete" in text
    assert not list((tmp_path / "r").glob("*.png"))


def test_report_without_per_inference_delays(db_path, tmp_path, capsys):
    store = Store.open(db_path)
    rng = np.random.default_rng(0)
    run_id = write_run(store, [
        {"level": "s/x", "method": m, "setup": s, "key": f"{m}-{s}", "solved": rng.random(32) < p,
         "jerk_d2": rng.gamma(3.0, 0.3, 32)}
        for m, p in (("naive", 0.6), ("rtc_exp", 0.9)) for s in ("a", "b")])
    code, out, err = run_main(capsys, "report", "--db", str(db_path), "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert run_id in out
    text = (tmp_path / "r" / "report.md").read_text()
    assert "No per-inference delays are stored" in text
    assert {p.name for p in (tmp_path / "r").glob("*.png")} == {"solve_rate.png", "jerk.png", "violations_stalls.png"}
    # the findings name the better method with its interval, computed from the stored cells
    assert "highest solve rate rtc_exp" in text
    code, _, err = run_main(capsys, "report", "--db", str(db_path), "--run", "nope", "--out", str(tmp_path / "r"))
    assert code == 2 and "no run 'nope'" in err
