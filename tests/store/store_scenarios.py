"""The store tests' tiny scenarios: one level, the shipped policy, and the delay setups they share.
Imported by name (a module of its own: several test folders have a `conftest`, so `from conftest import`
depends on which one pytest loaded last)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GATE_LEVEL = "s/h8_unicycle_balance"
SHIPPED_POLICY = REPO_ROOT / "policies" / "{level}" / "bc.msgpack"

# A fixed 2-step delay, and a spiky mixture where violations and stalls happen.
SPIKY_SETUP = """
  - name: spiky
    profile:
      kind: mixture
      base: {kind: categorical, values: [1, 2, 3], probs: [0.25, 0.5, 0.25]}
      p_spike: 0.2
      d_spike: 6
    forecaster: {kind: window_max, b: 10, init: 3}
    horizon: {kind: adaptive, s_min: 3}"""
GATE_SETUPS = """
  - name: fixed2
    profile: {kind: fixed, d: 2}
    forecaster: {kind: fixed, d: 2}
    horizon: {kind: fixed_clock, s: 2}""" + SPIKY_SETUP + "\n"

FIVE_FIXED_SETUPS = "".join(
    f"""
  - name: fixed{d}
    profile: {{kind: fixed, d: {d}}}
    forecaster: {{kind: fixed, d: {d}}}
    horizon: {{kind: fixed_clock, s: {max(d, 1)}}}""" for d in range(5)) + "\n"


def scenario_yaml(name: str, setups: str, *, methods: str = "[{kind: naive}]", rollouts: int = 16,
                  max_steps: int = 32, policy: str = str(SHIPPED_POLICY)) -> str:
    """Every run test uses the same level, method, rollouts and steps: one compiled episode serves them all."""
    return f"""schema_version: 1
name: {name}
version: 1
description: tiny scenario of the store tests
levels: [{GATE_LEVEL}]
policy: {policy}
methods: {methods}
setups:{setups}
dt_ms: 33.3
H: 8
flow_steps: 5
rollouts: {rollouts}
max_steps: {max_steps}
seeds: {{delay: 0, env: 0, policy: 0}}
"""
