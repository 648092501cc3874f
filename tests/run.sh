#!/usr/bin/env bash
# The whole test suite, in two pytest processes: the policy tests (the tiny training pipeline, the shipped
# checkpoints) apart from everything else. One process for the whole suite once died with a segmentation
# fault inside XLA's CPU compiler (jax 0.9.0), in tests/policy/test_shipped.py, after compiling every other
# test's programs first; the same test passes in a process of its own. Splitting keeps each process's
# compiled-program count near what the suite has always run with. Extra arguments go to both runs.
# Use: PYTHON=.venv/bin/python bash tests/run.sh   (default PYTHON: python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
"$PY" -m pytest -q tests/bench tests/engine tests/replay tests/store "$@"
"$PY" -m pytest -q tests/policy "$@"
