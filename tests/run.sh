#!/usr/bin/env bash
# The README's test command runs this (and .ci/run runs that command verbatim): the correctness suite in two
# pytest processes, each tier timed:
#   1. the engine, replay and store tests;
#   2. the policy tests (the tiny training pipeline, the shipped checkpoints' cheap checks). One process for
#      everything once died with a segmentation fault inside XLA's CPU compiler (jax 0.9.0) after compiling
#      every other test's programs; splitting keeps each process's compiled-program count near what it has
#      always been.
# Tests marked `heavy` (a Ray cluster, forced host devices, bench-sweep's three processes, `rtcbench bench`)
# and the pytest-benchmark regression gate are tests/run_ci.sh, which .ci/run runs next: no check is lost,
# and machine load from the correctness runs never reaches a timed round. Re-measuring the shipped policies
# (fresh closed-loop rollouts against each sidecar) is `rtcbench policy verify policies/`, run when policies,
# levels or packages change.
# Every process shares one persistent JAX compilation cache (tests/conftest.py), keyed by the JAX version
# and constraints.txt, under ${XDG_CACHE_HOME:-~/.cache}/rtcbench/test-jax/.
# Extra arguments go to both pytest runs (e.g. -x, -k, --durations=20).
# Use: PYTHON=.venv/bin/python bash tests/run.sh   (default PYTHON: python)
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/suite_env.sh
tier() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "tier $name: $((SECONDS - t0)) s"; }
tier engine-replay-store "$PY" -m pytest -q tests/engine tests/replay tests/store -m "not heavy" "$@"
tier policy "$PY" -m pytest -q tests/policy -m "not heavy" "$@"
