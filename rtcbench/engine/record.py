"""Record the real wall-clock latency of the jitted inference on this machine, as a delay trace.

Each latency is one batched inference call of the method (compiled once, warmed up, then timed call by
call with `block_until_ready`). Optional background load: K busy-looping processes run while recording,
so a trace can capture contention. The trace header names the hardware and the load.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform

import jax


def _busy(stop) -> None:  # a background process that burns one core until told to stop
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def hardware_string() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", dev.platform)
    return f"{cpu}; {os.cpu_count()} logical CPUs; jax {jax.__version__} {dev.platform} ({kind})"


def record_latencies(method, policy, level, *, batch: int = 1, n_calls: int = 200, warmup: int = 3,
                     background_load: int = 0, n: int = 5) -> tuple[list[float], str, str]:
    """-> (latencies in ms, hardware description, load description). policy: a LoadedPolicy."""
    from rtcbench.engine.timing import inference_times

    obs_row, _ = level.reset(jax.random.PRNGKey(0))
    H = policy.config.H
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs = [ctx.Process(target=_busy, args=(stop,), daemon=True) for _ in range(background_load)]
    load_before = os.getloadavg()[0]
    try:
        # compile and warm up before the load starts, so compile time never enters the trace
        inference_times(method, policy.graphdef, policy.state, obs_row, B=batch, H=H, n=n,
                        action_dim=level.action_dim, repeats=1, warmup=warmup)
        for p in procs:
            p.start()
        times = inference_times(method, policy.graphdef, policy.state, obs_row, B=batch, H=H, n=n,
                                action_dim=level.action_dim, repeats=n_calls, warmup=warmup)
        load_during = os.getloadavg()[0]
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()
    load = (f"{background_load} busy-loop background processes; 1-min loadavg {load_before:.2f} before, "
            f"{load_during:.2f} at the end; batch {batch}, {n} flow steps, method {method.label}")
    return [1000.0 * t for t in times], hardware_string(), load
