#!/usr/bin/env bash
# What .ci/run adds to the README's test command (tests/run.sh): the tests marked `heavy` (a Ray cluster,
# forced host devices, bench-sweep's three processes, `rtcbench bench`), then the pytest-benchmark
# regression gate (tests/bench) on its own, compared with the committed 2-core baseline, so that no other
# test's load reaches a timed round.
# Use: PYTHON=.venv/bin/python bash tests/run_ci.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/suite_env.sh
tier() { local name=$1; shift; local t0=$SECONDS; "$@"; echo "tier $name: $((SECONDS - t0)) s"; }
tier heavy "$PY" -m pytest -q tests/engine tests/store -m heavy "$@"
tier benchmarks "$PY" -m pytest -q tests/bench --benchmark-storage=file://tests/bench/baseline \
    --benchmark-compare=0002 --benchmark-compare-fail=min:150% --benchmark-columns=min,median,max,rounds
