"""rtcbench: trace-driven benchmark harness for real-time action chunking under random inference latency."""

__version__ = "0.1.0"
