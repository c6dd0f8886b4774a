"""Operator kinds in pipeline.yaml: the deprecated ``score`` still loads, as ``video_model``, with a warning that
names the file and the operator."""

from __future__ import annotations

import pytest

from streamad.config import load_config_text
from streamad.operators.video_model import VideoModelOp
from streamad.registry import OPERATORS

TEXT = """
streams: []
operators:
  - {kind: clip_window, clip_length_in_frames: 2}
  - {kind: %s, model: {kind: aivad}}
"""


def test_score_is_a_deprecated_alias_of_video_model() -> None:
    with pytest.warns(DeprecationWarning, match=r"pipe\.yaml: operators\[1\]: kind 'score' is deprecated"):
        cfg = load_config_text(TEXT % "score", name="pipe.yaml")
    assert cfg.operators[1].kind == "video_model"
    assert OPERATORS.get(cfg.operators[1].kind) is VideoModelOp
    assert OPERATORS.get("score") is VideoModelOp  # old code that names the kind still finds the class


def test_video_model_loads_without_warning(recwarn: pytest.WarningsRecorder) -> None:
    cfg = load_config_text(TEXT % "video_model", name="pipe.yaml")
    assert cfg.operators[1].kind == "video_model"
    assert not [w for w in recwarn.list if issubclass(w.category, DeprecationWarning) and "deprecated" in str(w.message)]
