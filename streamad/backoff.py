"""Capped exponential backoff with jitter, shared by everything that retries: the Kafka sink's deliveries and the
live sources' reconnects (the schedule of the AWS Architecture Blog's "Exponential Backoff And Jitter", with a
bounded multiplicative jitter so that the first retries stay quick)."""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(failures: int, initial_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1, 2, ...): ``initial_s * 2**(failures-1)``
    capped at ``max_s``, times a random jitter factor in ``[0.8, 1.2]`` (still capped at ``max_s``).

    Example: ``initial_s=0.5, max_s=3`` gives about 0.5, 1, 2, 3, 3, ... seconds.
    """
    rng = rng or random
    base = min(max_s, initial_s * 2.0 ** max(0, failures - 1))
    return min(max_s, base * rng.uniform(0.8, 1.2))
