"""``streamad bench --repeat N``: the same bench run N times one after the other in one process, so that a speed
figure comes with its spread.

On a shared or virtual machine the same command moves by 5-15 % from one run to the next (README, Speed). A single
run cannot say whether a change of a few per cent is real; N runs give the median and the range, and comparing two
settings means comparing their medians with the ranges beside them. The runs share the process: imports and the
first model compilation fall in run 1, so its figure can be a little lower than the others'. The previous run's
pipeline is garbage-collected before the next one is built, so two models never sit in memory together; the peak
memory reported is the process's over the runs so far.
"""

from __future__ import annotations

import gc
import statistics
from dataclasses import dataclass
from typing import Any, Callable

from streamad.bench.run import BenchResult

__all__ = ["RepeatedBench", "repeat_bench"]


@dataclass
class RepeatedBench:
    """The results of N runs of one bench.

    Attributes:
        runs: every run's :class:`~streamad.bench.run.BenchResult`, in order.
    """

    runs: list[BenchResult]

    @property
    def fps(self) -> list[float]:
        """Each run's frames/s end to end."""
        return [r.fps for r in self.runs]

    @property
    def median_run(self) -> BenchResult:
        """The run whose frames/s is the median (the lower middle run for an even count)."""
        order = sorted(range(len(self.runs)), key=lambda i: self.runs[i].fps)
        return self.runs[order[(len(order) - 1) // 2]]

    def summary(self) -> str:
        """One line: the median frames/s, the range and every run's figure, in run order."""
        fps = self.fps
        return (f"frames/s over {len(fps)} runs: median {statistics.median(fps):.1f}, min {min(fps):.1f}, "
                f"max {max(fps):.1f} (runs: {', '.join(f'{f:.1f}' for f in fps)})")

    def to_json(self) -> dict[str, Any]:
        """The median run's figures (:meth:`BenchResult.to_json`) plus ``repeats``: ``fps`` (every run's, in order),
        ``median``, ``min``, ``max``, and every run's ``accuracy``."""
        fps = self.fps
        out = self.median_run.to_json()
        out["repeats"] = {"fps": [round(f, 2) for f in fps], "median": round(statistics.median(fps), 2),
                          "min": round(min(fps), 2), "max": round(max(fps), 2),
                          "accuracy": [r.accuracy for r in self.runs]}
        return out


def repeat_bench(run: Callable[[], BenchResult], times: int,
                 progress: Callable[[int, BenchResult], None] | None = None) -> RepeatedBench:
    """Call ``run`` (one :func:`~streamad.bench.run.bench`) ``times`` times in a row.

    Args:
        run: runs one bench and returns its result. times: number of runs, at least 1.
        progress: called after each run with its 1-based number and its result (the CLI prints a line).

    Raises:
        ValueError: ``times`` below 1. Whatever ``run`` raises.
    """
    if times < 1:
        raise ValueError(f"bench: --repeat must be at least 1, got {times}")
    runs: list[BenchResult] = []
    for i in range(1, times + 1):
        gc.collect()  # the previous run's pipeline and model, before the next ones are built
        runs.append(run())
        if progress is not None:
            progress(i, runs[-1])
    return RepeatedBench(runs)
