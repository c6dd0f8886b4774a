"""``streamad bench``: throughput, per-stage time and CPU share, memory and end-to-end latency of a pipeline on N
concurrent copies of its streams (:mod:`streamad.bench.run`)."""

from streamad.bench.run import BenchResult, bench, copies_of_streams

__all__ = ["BenchResult", "bench", "copies_of_streams"]
