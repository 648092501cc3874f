"""`rtcbench policy consistency`: RTC's guidance really inpaints the frozen prefix, BID picks the sample
closest to it, and training-time RTC keeps it exactly (its prefix tokens are clean).

The shipped l/h17_unicycle:packed policy is used because its chunks are multimodal (the chatter phase of
its expert): a nearly deterministic policy leaves guidance nothing to choose between (the clean estimate
then barely depends on the noise, so its Jacobian, and with it the guidance, is close to zero).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtcbench.cli.main import main

POLICIES = Path(__file__).resolve().parents[2] / "policies" / "l_h17_unicycle_packed"


def test_used_action_dims():
    from rtcbench.levels import load_level, used_action_dims

    assert used_action_dims(load_level("s/h8_unicycle_balance")) == [1]  # one motor on binding 1
    assert used_action_dims(load_level("m/h4_thrust_the_needle")) == [4]  # one thruster: after 4 motor bindings


@pytest.mark.slow
def test_rtc_keeps_the_prefix_closer_than_naive(capsys):
    capsys.readouterr()
    rc = main(["policy", "consistency", "--policy", str(POLICIES / "bc"), "--ttrtc", str(POLICIES / "ttrtc"),
               "--delay", "2", "--horizon", "2", "--n", "128", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    rows = {r["method"]: r for r in map(json.loads, out.strip().splitlines())}
    assert set(rows) == {"naive", "rtc_exp", "rtc_hard", "bid16", "ttrtc"}
    assert all(r["action_dims"] == [0] and (r["d"], r["s"], r["B"]) == (2, 2, 128) for r in rows.values())
    # guidance pulls the frozen positions towards the prefix (measured: about 30% closer than naive);
    # BID's best-of-16 is closest on the band; the clean prefix tokens of ttrtc are the prefix itself
    naive = rows["naive"]
    assert naive["frozen_error"] > 0.05
    assert rows["rtc_exp"]["frozen_error"] < 0.85 * naive["frozen_error"]
    assert rows["rtc_hard"]["frozen_error"] < 0.85 * naive["frozen_error"]
    assert rows["bid16"]["band_error"] < 0.85 * naive["band_error"]
    assert rows["ttrtc"]["frozen_error"] == 0.0


def test_consistency_bad_input(capsys):
    capsys.readouterr()
    assert main(["policy", "consistency", "--policy", str(POLICIES / "bc"), "--delay", "5", "--horizon", "4"]) == 2
    assert "delay + horizon <= H" in capsys.readouterr().err
    assert main(["policy", "consistency", "--policy", str(POLICIES / "bc"), "--delay", "1", "--delay", "2"]) == 2
    assert "as many --delay" in capsys.readouterr().err
    assert main(["policy", "consistency", "--policy", str(POLICIES / "bc"), "--ttrtc", str(POLICIES / "bc")]) == 2
    assert "not a ttrtc checkpoint" in capsys.readouterr().err
