"""Small builders shared by the tests (frames, scores, running one operator over a stream, loading a benchmark
script)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import numpy as np

from streamad.builtin import load_builtin_parts
from streamad.frames import EndOfStream, Frame, Scores
from streamad.registry import OPERATORS

load_builtin_parts()

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` loaded as a module (benchmarks/ is not a package), freshly each call and
    not entered in ``sys.modules``; raises ``FileNotFoundError`` naming the path when there is no such script."""
    path = BENCHMARKS / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark script {path}")
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def frame(i: int, stream: str = "s", fps: float = 10.0, size: tuple[int, int] = (8, 6), label: int | None = None,
          image: np.ndarray | None = None) -> Frame:
    """Frame ``i`` of ``stream``: ``(h, w, 3) uint8`` zeros unless ``image`` is given; pts = i / fps."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8) if image is None else image
    return Frame(stream_id=stream, index=i, pts=i / fps, wall_time=1_700_000_000.0 + i / fps, image=img, label=label)


def scores(i: int, value: float, stream: str = "s", fps: float = 10.0, normalized: float | None = None,
           label: int | None = None) -> Scores:
    """A scored frame with one region of score ``value``."""
    return Scores(stream_id=stream, index=i, pts=i / fps, wall_time=1_700_000_000.0 + i / fps, raw_score=value,
                  score=value, boxes=np.array([[1, 2, 5, 6]], np.float32),
                  region_scores=np.array([value], np.float32), contributions={"velocity": np.array([value], np.float32)},
                  normalized=normalized, anomalous=None if normalized is None else normalized >= 0.5, label=label,
                  model={"name": "aivad", "version": "t"}, width=8, height=6)


def run_operator(kind: str, messages: Iterable[Any], shared: Any = None, stream: str = "s", **cfg: Any) -> list[Any]:
    """Feed ``messages`` through a fresh ``kind`` operator for one stream, then flush; returns all outputs, and
    last, when the end raised events (:meth:`Operator.end_events`), the :class:`EndOfStream` carrying them."""
    cls = OPERATORS.get(kind)
    op = cls(cls.Config(kind=kind, **cfg), shared, stream)
    out: list[Any] = []
    for m in messages:
        out.extend(op.process(m))
    out.extend(op.flush())
    end = op.end_events()
    if end:
        out.append(EndOfStream(stream, events=end))
    return out
