"""Hostile or mistaken configs and inputs fail with one clear error, before they cost memory or time."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from streamad.config import MAX_YAML_DEPTH, load_config_text
from streamad.errors import ConfigError, SourceError
from streamad.sources.image_folder import read_rgb

BASE = """
streams: []
operators:
  - {kind: clip_window, clip_length_in_frames: %s}
runtime: {queue_size: %s}
"""


def test_deep_nesting_is_refused_with_the_line() -> None:
    deep = "streams: []\noperators: []\nx: " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(ConfigError, match=rf"deep\.yaml:3: YAML nested deeper than {MAX_YAML_DEPTH} levels"):
        load_config_text(deep, name="deep.yaml")


def test_alias_bomb_is_refused_before_it_is_built() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    bomb = "streams: []\noperators: []\n" + "\n".join(lines) + "\n"  # 10**9 strings once expanded
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: the YAML stands for more than 100000 values"):
        load_config_text(bomb, name="bomb.yaml")
    assert time.perf_counter() - t0 < 10  # refused while scanning, not after expanding


def test_an_ordinary_config_with_aliases_still_loads() -> None:
    text = "streams: []\noperators:\n  - &w {kind: clip_window, clip_length_in_frames: 4}\nsinks: []\n"
    assert load_config_text(text).operators[0].clip_length_in_frames == 4


def test_oversized_values_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"runtime\.queue_size.*less than or equal to 10000"):
        load_config_text(BASE % (2, 10**15))
    with pytest.raises(ConfigError, match=r"clip_length_in_frames.*less than or equal to 1000"):
        load_config_text(BASE % ("1000000000", 16))
    assert load_config_text(BASE % (16, 64)).runtime.queue_size == 64


def test_oversized_file_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"big\.yaml: config is larger than"):
        load_config_text("streams: []\noperators: []\n# " + "x" * (2 << 20) + "\n", name="big.yaml")


def test_unset_variable_error_names_the_file_and_key() -> None:
    text = "data_root: ${STREAMAD_SURELY_UNSET_VAR}\nstreams: []\noperators: []\n"
    with pytest.raises(ConfigError, match=r"^cam\.yaml: data_root: environment variable STREAMAD_SURELY_UNSET_VAR "):
        load_config_text(text, name="cam.yaml", env={})


def test_truncated_jpeg_is_an_error_not_a_grey_frame(tmp_path: Path) -> None:
    import cv2

    img = (np.arange(64 * 48 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(buf.tobytes())
    assert read_rgb(whole).shape == (48, 64, 3)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(buf.tobytes()[: len(buf) // 2])
    with pytest.raises(SourceError, match=r"cut\.jpg: truncated JPEG"):
        read_rgb(cut)
