"""``streamad bench``: throughput, per-stage time and CPU share, memory and end-to-end latency of a pipeline on N
concurrent copies of its streams (:mod:`streamad.bench.run`), optionally repeated to give the spread between runs
(:mod:`streamad.bench.repeat`)."""

from streamad.bench.repeat import RepeatedBench, repeat_bench
from streamad.bench.run import BenchResult, bench, copies_of_streams

__all__ = ["BenchResult", "RepeatedBench", "bench", "copies_of_streams", "repeat_bench"]
