"""OpenVINORunner's compile choices on a small exported graph: the resize to the size frames already have is bypassed
in static-shape models (and only that one), and ``precision`` picks f32 or the CPU's bf16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch
from torch import nn

from streamad.models.image.preprocess import Preprocess
from streamad.models.image.runner import OpenVINORunner, _drop_identity_resizes

SIZE = (16, 24)


class _MeanNet(nn.Module):
    """Preprocess to ``SIZE``, then the channel mean as the map and its maximum as the score."""

    def __init__(self) -> None:
        super().__init__()
        self.preprocess = Preprocess(SIZE)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        amap = self.preprocess(images).mean(1, keepdim=True)
        return amap, amap.flatten(1).amax(1)


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = ov.convert_model(_MeanNet(), example_input=torch.zeros(1, *SIZE, 3, dtype=torch.uint8),
                             input=[ov.PartialShape([-1, -1, -1, 3])])
    for out, name in zip(model.outputs, ("anomaly_map", "score")):
        out.get_tensor().set_names({name})
    path = tmp_path_factory.mktemp("ir") / "model.xml"
    ov.save_model(model, path)
    return path


def _frames(n: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(h * w).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_identity_resize_is_bypassed_only_at_the_models_own_size(ir: Path) -> None:
    core = ov.Core()
    for shape, dropped in (([2, *SIZE, 3], 1), ([2, 32, 48, 3], 0)):
        model = core.read_model(ir)
        model.reshape({model.inputs[0]: shape})
        assert _drop_identity_resizes(model) == dropped
        resizes = [op for op in model.get_ordered_ops() if op.get_type_name() == "Interpolate"]
        assert len(resizes) == 1 - dropped  # a bypassed node has no consumers left and leaves the graph
    runner = OpenVINORunner(ir)
    net = _MeanNet()
    for frames in (_frames(2, *SIZE), _frames(3, 32, 48)):  # bypassed, then a real resize in the same runner
        amap, score = runner(frames)
        with torch.inference_mode():
            ref_map, ref_score = net(torch.from_numpy(frames))
        np.testing.assert_allclose(amap, ref_map.numpy(), atol=1e-4)
        np.testing.assert_allclose(score, ref_score.numpy(), atol=1e-4)


def _cpu_has_bf16() -> bool:
    flags = set(Path("/proc/cpuinfo").read_text(encoding="utf-8").split()) if Path("/proc/cpuinfo").is_file() else set()
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def test_precision_is_f32_unless_bf16_is_asked_for_and_the_cpu_has_it(ir: Path) -> None:
    frames = _frames(2, *SIZE)
    f32 = OpenVINORunner(ir)
    amap32, score32 = f32(frames)
    assert f32.precision_used == "f32"
    b16 = OpenVINORunner(ir, precision="bf16")
    amap16, score16 = b16(frames)
    assert b16.precision_used == ("bf16" if _cpu_has_bf16() else "f32")
    np.testing.assert_allclose(amap16, amap32, rtol=1e-2, atol=0.5)  # bfloat16 keeps 8 bits of mantissa
    np.testing.assert_allclose(score16, score32, rtol=1e-2, atol=0.5)
    with pytest.raises(ValueError, match="precision must be f32 or bf16"):
        OpenVINORunner(ir, precision="fp64")
