"""Whether ``streamad fit`` read enough training data, and a clear message when it did not.

A camera recorded for too short a time, a file with a handful of frames or a training stream that failed leaves
the model less than it needs (AI-VAD: at least one clip of ``clip_length_in_frames`` frames, and at least as many
regions as GMM components). :func:`require_enough` refuses that before fitting and :func:`fit_model` adds what was
read to the model's own refusal: how many frames, from which streams, and how many are needed.
"""

from __future__ import annotations

from typing import Any, Sequence

from streamad.models.fitting import ModelFitter
from streamad.parts import PartConfig, Source
from streamad.runtime.pipeline import RunStats

__all__ = ["require_enough", "fit_model", "read_summary"]


def read_summary(stats: RunStats, sources: Sequence[Source]) -> str:
    """``"read 3 frames from 1 stream (cam)"`` plus the streams that failed, for messages."""
    ids = ", ".join(s.stream_id for s in sources) or "none"
    text = f"read {stats.frames_in} frames from {len(sources)} stream(s) ({ids})"
    if stats.errors:
        text += "; failed: " + "; ".join(f"{k}: {v}" for k, v in stats.errors.items())
    return text


def _clip_length(operators: Sequence[PartConfig]) -> tuple[int, int] | None:
    """``(position, clip_length_in_frames)`` of the operator that cuts clips before the model, if any."""
    for i, op in enumerate(operators):
        n = getattr(op, "clip_length_in_frames", None)
        if n is not None:
            return i, int(n)
    return None


def require_enough(fitter: ModelFitter, stats: RunStats, sources: Sequence[Source],
                   operators: Sequence[PartConfig]) -> None:
    """Refuse a fit whose training streams gave fewer samples than the model needs (``fitter.min_samples``).

    Args:
        fitter: the model's fit state after the training streams were read.
        stats: the statistics of that read (frames read, failed streams).
        sources: the training streams. operators: the operators before the model operator (``fit.train``'s path).

    Raises:
        ValueError: ``fit.train: too few frames to fit on: read N frames from ... which gave K training clips;
            the model needs at least M`` (with the clip length when clips are cut), and what to do.
    """
    need = fitter.min_samples
    if fitter.samples >= need:
        return
    clip = _clip_length(operators)
    per = (f" (a clip is {clip[1]} consecutive frames of one stream, operators[{clip[0]}].clip_length_in_frames, "
           f"so at least {clip[1]} frames are needed)" if clip else "")
    raise ValueError(f"fit.train: too few frames to fit on: {read_summary(stats, sources)}, which gave "
                     f"{fitter.samples} training {fitter.sample_unit}; the model needs at least {need}{per}. "
                     f"Record longer (duration_s / max_frames of a live stream) or add training streams")


def fit_model(fitter: ModelFitter, stats: RunStats, sources: Sequence[Source], progress: bool
              ) -> tuple[Any, dict[str, Any]]:
    """``fitter.fit(progress)``; a ``ValueError`` of the model (too few regions, no features) is re-raised with
    what was read (:func:`read_summary`)."""
    try:
        return fitter.fit(progress=progress)
    except ValueError as exc:
        raise ValueError(f"fit.train: cannot fit on what was read ({read_summary(stats, sources)}): {exc}") from None
