"""Item 12 of issue 18: ``save_model`` replaces a model directory atomically. A save killed (``os._exit``, no
``finally`` runs) before any of its renames or fsyncs leaves the directory holding the complete old or the
complete new model, never ``weights.npz`` of one save with ``model.json`` of another; the next save removes
every leftover and keeps files that belong to the directory, while stale exports are dropped."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from streamad.models.postprocess import PostProcess
from streamad.models.store import read_metadata, recover_model_dir, save_model

class _Cfg:
    def model_dump(self, mode: str = "json") -> dict:
        return {}


class Fake:
    """A stand-in model (save_model only calls state(), kind, version, config.model_dump()), its weights all equal
    to its tag, so that a model.json / weights.npz pair of two different saves is visible."""

    kind = "fake"
    version = "1"
    config = _Cfg()

    def __init__(self, tag: float) -> None:
        self.tag = tag

    def state(self) -> tuple[dict, dict]:
        return {"tag": self.tag}, {"w": np.full(50_000, self.tag, dtype=np.float32)}


def _crashing_save(d: Path, crash_at: int) -> None:
    """In a forked child: save model 2.0 into ``d``, dying (``os._exit(9)``: no finally block runs) just before
    the ``crash_at``-th call of os.rename/replace/fsync/rmdir/unlink."""
    calls = [0]

    def crashing(real):  # noqa: ANN001, ANN202
        def f(*a, **k):  # noqa: ANN002, ANN003, ANN202
            calls[0] += 1
            if calls[0] == crash_at:
                os._exit(9)
            return real(*a, **k)
        return f

    for name in ("rename", "replace", "fsync", "rmdir", "unlink"):
        setattr(os, name, crashing(getattr(os, name)))
    save_model(d, Fake(2.0), PostProcess(min=0.0, max=1.0, image_threshold=0.5), {"tag": 2.0})
    os._exit(0)


POST = PostProcess(min=0.0, max=1.0, image_threshold=0.5)


def _pair(d: Path) -> float:
    """The tag of the model in ``d``; AssertionError when model.json and weights.npz come from different saves."""
    meta = read_metadata(d)  # also recovers a save interrupted between its two renames
    with np.load(d / "weights.npz", allow_pickle=False) as npz:
        w = npz["w"]
    assert np.all(w == w[0]) and w.size == 50_000, "weights.npz is truncated or mixed"
    assert float(w[0]) == meta["tag"] == meta["model"]["params"]["tag"], \
        f"{d}: model.json of save {meta['tag']} with weights.npz of save {float(w[0])}"
    return float(w[0])


def _old_model(d: Path) -> None:
    save_model(d, Fake(1.0), POST, {"tag": 1.0})
    (d / "onnx").mkdir()
    (d / "onnx" / "model.onnx").write_bytes(b"stale export")
    (d / "NOTES.txt").write_text("kept")


def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_model_and_the_next_save_cleans_up(
        tmp_path: Path) -> None:
    seen: dict[int, float] = {}
    for k in range(1, 60):  # crash before the k-th rename/replace/fsync/rmdir/unlink of the save
        d = tmp_path / f"k{k}" / "model"
        _old_model(d)
        child = multiprocessing.get_context("fork").Process(target=_crashing_save, args=(d, k))
        child.start()
        child.join(60)
        if child.exitcode == 0:
            assert _pair(d) == 2.0
            break
        assert child.exitcode == 9, child.exitcode
        seen[k] = _pair(d)  # the complete old (1.0) or the complete new (2.0) model, never a mix
        # the next save: leftovers gone, the new model in place, NOTES.txt kept, the stale export dropped
        save_model(d, Fake(3.0), POST, {"tag": 3.0})
        assert _pair(d) == 3.0
        assert sorted(p.name for p in d.parent.iterdir()) == ["model"], list(d.parent.iterdir())
        assert (d / "NOTES.txt").read_text() == "kept" and not (d / "onnx").exists()
    else:
        raise AssertionError("the save never completed within 59 crash points")
    assert len(seen) >= 4, seen  # the fsyncs and both renames were crash points
    assert set(seen.values()) == {1.0, 2.0}, seen  # early crashes keep the old model, late ones give the new


def test_a_reader_finishes_a_swap_interrupted_between_the_two_renames(tmp_path: Path) -> None:
    d = tmp_path / "model"
    _old_model(d)
    new = tmp_path / ".model.new-1-abc"
    save_model(new, Fake(2.0), POST, {"tag": 2.0})  # (a complete new copy, as the save writes it)
    d.rename(tmp_path / ".model.old-1-abc")  # the crash came after the first rename
    assert _pair(d) == 2.0  # read_metadata rolled the save forward
    (tmp_path / ".model.new-2-def").mkdir()  # an incomplete copy of a save that crashed while writing
    recover_model_dir(d)  # nothing to do: the directory exists
    save_model(d, Fake(3.0), POST, {"tag": 3.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_only_an_old_copy_left_is_renamed_back(tmp_path: Path) -> None:
    d = tmp_path / "model"
    _old_model(d)
    d.rename(tmp_path / ".model.old-7-x")
    assert _pair(d) == 1.0
    assert json.loads((d / "model.json").read_text())["tag"] == 1.0


def test_a_model_dir_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model").write_text("x")
    with pytest.raises(NotADirectoryError, match="model"):
        save_model(tmp_path / "model", Fake(1.0), POST)

