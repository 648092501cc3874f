# Sourced by tests/run.sh and tests/run_ci.sh: the Python to use and the suite's one persistent JAX
# compilation cache, keyed by the JAX version and the hash of constraints.txt (tests/conftest.py reads it).
PY=${PYTHON:-python}
jax_version=$("$PY" -c "import importlib.metadata as m; print(m.version('jax'))")
pins=$(sha256sum constraints.txt | cut -c1-12)
export RTCBENCH_TEST_JAX_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/rtcbench/test-jax/jax${jax_version}-${pins}"
mkdir -p "$RTCBENCH_TEST_JAX_CACHE"
