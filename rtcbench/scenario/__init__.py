"""Scenario: a versioned YAML file that fixes everything a benchmark run depends on.

    schema_version: 1
    name: longtail_5pct
    version: 1                              # content version of this scenario
    description: 5% delay spikes on top of 1-3 step delays
    levels: [s/h8_unicycle_balance]         # kinetix-env built-ins, project levels (rtc/<name>) or level
                                            # JSON paths, each optionally with ':packed' (rtcbench.levels:
                                            # same physics, smaller arrays)
    policy: ../../policies/{level}/bc.msgpack
    methods: [{kind: naive}, {kind: rtc}]   # rtcbench.methods.config.MethodConfig
    setups:                                 # rtcbench.replay.setup.DelaySetup
      - {name: wmax, profile: {...}, tail: [...], forecaster: {...}, horizon: {...}}
    dt_ms: 33.3
    H: 8
    flow_steps: 5
    rollouts: 256
    max_steps: 256
    seeds: {delay: 0, env: 0, policy: 0}
    fallback: hold                          # hold | zero

Relative paths (policy checkpoints, traces, level JSONs) resolve against the scenario file's directory;
``{level}`` in a checkpoint path becomes the level's slug (``s/h4_thrust_aim`` -> ``s_h4_thrust_aim``).

Modules, one job each:
- `rtcbench.scenario.model`: `Scenario` (the pydantic model and its checks across fields), `Seeds`, `Cell`;
- `rtcbench.scenario.loading`: reading the YAML and turning validation errors into `UserError`;
- `rtcbench.scenario.files`: the checks that the levels, traces and policies a scenario names exist;
- `rtcbench.scenario.paths`: level paths versus level names, and relative path resolution;
- `rtcbench.scenario.overrides`: ``--set PATH=VALUE`` (`parse_set`, `apply_sets`);
- `rtcbench.scenario.bounds`: the size bound of a parsed document (YAML alias bombs) and the bounded echo
  of inputs in error messages;
- `rtcbench.scenario.hashing`: ``config_hash``, ``comparability_key`` and the per-cell hashes (what
  each covers is in that module's docstring).

This package imports no JAX (``rtcbench schedule`` must stay physics-free).
"""

from __future__ import annotations

from rtcbench.replay.tail import SCHEDULE_VERSION
from rtcbench.scenario.model import (
    MAX_SEED,
    SCHEDULE_BYTES_PER_ROLLOUT_STEP,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    Cell,
    Scenario,
    Seeds,
)
from rtcbench.scenario.overrides import apply_sets, parse_set

__all__ = [
    "MAX_SEED",
    "SCHEDULE_BYTES_PER_ROLLOUT_STEP",
    "SCHEDULE_VERSION",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "Cell",
    "Scenario",
    "Seeds",
    "apply_sets",
    "parse_set",
]
