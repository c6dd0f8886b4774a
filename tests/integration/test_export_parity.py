"""`streamad export`: the OpenVINO IR of every exportable image model scores like torch on 50 Magnetic Tile test images
(normalised scores within 1e-3, identical labels), the ONNX export of PatchCore (its nearest-neighbour search,
no cdist) too, and serve / eval pick the IR up through the ``image_model`` operator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from scipy.stats import spearmanr

from streamad.cli import cli
from streamad.export import export_model
from streamad.models.components.normalization import min_max_normalize
from streamad.models.image import IMAGE_MODELS
from streamad.models.image.runner import OpenVINORunner, TorchRunner, open_runner
from streamad.models.postprocess import PostProcess
from streamad.models.store import load_model, read_metadata
from streamad.parts import BuildContext
from streamad.sources.datasets.folder import magnetic_tile_samples
from streamad.sources.image_folder import read_rgb

# The Magnetic Tile model fixture (tests/image_fixtures.py) of every registered image model; a kind with neither a
# fixture nor an entry in ELSEWHERE fails test_openvino_ir_scores_like_torch.
FIXTURES = {"patchcore": "mt_patchcore", "padim": "mt_padim", "dfm": "mt_dfm", "dfkde": "mt_dfkde",
            "fastflow": "mt_fastflow", "winclip": "mt_winclip"}  # WinCLIP on random CLIP weights (none offline)
ELSEWHERE = {kind: f"tests/integration/test_image_trained.py::test_openvino_ir_scores_like_torch[{kind}]"
             for kind in ("stfpm", "reverse_distillation", "uflow", "cfa", "cflow", "csflow", "ganomaly",
                          "draem", "dsr", "efficient_ad")}
# R-KDE (``exportable`` False: its regions come from a detector network before the torch one) has no IR; that
# export_model refuses it is tests/unit/test_image_models.py::test_fit_predict_save_load_export[rkde]
KINDS = [kind for kind in IMAGE_MODELS.names() if kind not in ELSEWHERE and IMAGE_MODELS.get(kind).exportable]


@pytest.fixture(scope="module")
def test_images(mt_root: Path) -> list[np.ndarray]:
    """50 test images spread evenly over the test split (every class, various sizes), as decoded RGB frames."""
    samples = magnetic_tile_samples(mt_root, "test")
    pick = np.linspace(0, len(samples) - 1, 50).round().astype(int)
    return [read_rgb(samples[i].path) for i in pick]


def _normalised(runner, images: list[np.ndarray], post: dict) -> tuple[np.ndarray, np.ndarray]:
    scores, maps = [], []
    for img in images:
        amap, score = runner(img)
        scores.append(min_max_normalize(float(score[0]), post["image_threshold"], post["min"], post["max"]))
        maps.append(min_max_normalize(amap[0, 0], post["pixel_threshold"], post["min"], post["max"]))
    return np.array(scores), np.stack(maps)


@pytest.mark.parametrize("kind", KINDS)
def test_openvino_ir_scores_like_torch(kind: str, request: pytest.FixtureRequest, test_images: list[np.ndarray],
                                       tmp_path: Path) -> None:
    assert kind in FIXTURES, f"image model {kind!r} has no Magnetic Tile fixture in FIXTURES (nor an ELSEWHERE entry)"
    model_dir: Path = request.getfixturevalue(FIXTURES[kind])
    res = export_model(model_dir, "openvino", output=tmp_path / "openvino")
    assert res.path.name == "model.xml" and (tmp_path / "openvino" / "model.bin").is_file()
    assert res.info["precision"] == "fp32" and res.info["check"]["normalised_max_diff"] < 1e-3
    model, meta = load_model(model_dir)
    post = meta["postprocess"]
    t_scores, t_maps = _normalised(TorchRunner(model), test_images, post)
    o_scores, o_maps = _normalised(OpenVINORunner(res.path), test_images, post)
    assert np.abs(t_scores - o_scores).max() < 1e-3
    assert np.array_equal(t_scores >= 0.5, o_scores >= 0.5)
    assert np.abs(t_maps - o_maps).max() < 1e-3
    assert np.array_equal(t_maps >= 0.5, o_maps >= 0.5) or np.mean((t_maps >= 0.5) != (o_maps >= 0.5)) < 1e-5
    assert 0 < (t_scores >= 0.5).sum() < 50  # both labels occur: the check is not vacuous


def test_patchcore_onnx_has_no_cdist_and_scores_like_torch(mt_patchcore: Path, test_images: list[np.ndarray],
                                                           tmp_path: Path) -> None:
    res = export_model(mt_patchcore, "onnx", output=tmp_path / "onnx")
    graph = onnx.load(str(res.path)).graph
    ops = {n.op_type for n in graph.node}
    assert "MatMul" in ops and ("ReduceMin" in ops or "ArgMin" in ops), ops
    assert not any("dist" in op.lower() for op in ops)
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["anomaly_map", "score"]
    assert res.info["check"]["normalised_max_diff"] < 1e-3  # the ONNX file run by OpenVINO's ONNX reader vs torch


def test_serve_path_picks_the_ir(mt_padim: Path, test_images: list[np.ndarray], tmp_path: Path) -> None:
    """`streamad export` (CLI) writes MODEL_DIR/openvino; the operator's runtime `auto` then runs the IR, a refit
    removes it, and an IR from another fit is refused."""
    model_dir = tmp_path / "model"
    shutil.copytree(mt_padim, model_dir)
    res = CliRunner().invoke(cli, ["export", str(model_dir), "--format", "openvino"])
    assert res.exit_code == 0, res.output
    assert "largest difference to torch" in res.output
    info = json.loads((model_dir / "openvino" / "export.json").read_text())
    assert info["model_created"] == read_metadata(model_dir)["created"]
    model, meta = load_model(model_dir)
    assert open_runner(model, model_dir, meta, "auto").name == "openvino"
    assert open_runner(model, model_dir, meta, "torch").name == "torch"
    from streamad.errors import ModelError
    from streamad.operators.image_model import ImageModelOp

    op_cfg = ImageModelOp.Config(kind="image_model", model=model.config.model_dump(), runtime="openvino")
    stage = ImageModelOp.create_shared(op_cfg, BuildContext(model_dir=model_dir))
    assert stage.handle.runner.name == "openvino" and stage.pixel_threshold == meta["postprocess"]["pixel_threshold"]
    meta_stale = {**meta, "created": "another fit"}
    with pytest.raises(ModelError, match="earlier fit"):
        open_runner(model, model_dir, meta_stale, "openvino")
    assert open_runner(model, model_dir, meta_stale, "auto").name == "torch"


def test_int8_export_keeps_the_ranking(mt_padim: Path, test_images: list[np.ndarray], tmp_path: Path) -> None:
    """INT8 (NNCF post-training quantisation of the backbone on 32 frames) is an approximation: it must keep the
    images' order close to FP32's, not the scores within 1e-3."""
    res = export_model(mt_padim, "openvino", "int8", calibration=test_images[:32], output=tmp_path / "int8")
    xml = res.path.read_text(encoding="utf-8")
    assert "FakeQuantize" in xml or "fake_quantize" in xml.lower()
    model, meta = load_model(mt_padim)
    t = np.array([TorchRunner(model)(img)[1][0] for img in test_images])
    q = np.array([OpenVINORunner(res.path)(img)[1][0] for img in test_images])
    assert spearmanr(t, q).statistic > 0.9


def test_export_errors(mt_dfkde: Path, tmp_path: Path) -> None:
    from streamad.models.store import save_model
    from streamad.models.video.aivad import AiVad

    video = AiVad(AiVad.Config(kind="aivad"))
    video.fit([{"velocity": np.random.default_rng(0).random((40, 8), dtype=np.float32)}], ["v"])
    save_model(tmp_path / "video", video, PostProcess(min=0.0, max=1.0, image_threshold=0.5))
    runner = CliRunner()
    res = runner.invoke(cli, ["export", str(tmp_path / "video")])
    assert res.exit_code == 4 and "export supports the image models" in res.output
    res = runner.invoke(cli, ["export", str(tmp_path / "nothing")])
    assert res.exit_code == 4 and "no model.json" in res.output
    res = runner.invoke(cli, ["export", str(mt_dfkde), "--precision", "int8", "-o", str(tmp_path / "x")])
    assert res.exit_code == 4 and "needs calibration frames" in res.output
    res = runner.invoke(cli, ["export", str(mt_dfkde), "--format", "onnx", "--precision", "fp16",
                              "-o", str(tmp_path / "y")])
    assert res.exit_code == 4 and "fp32 only" in res.output
