"""Session fixtures around UCSD Ped2 from ../shared/data: the data root and one fitted model for the whole run."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STREAMAD_DATA", REPO.parent / "shared" / "data")).resolve()


def vtest_frame(index: int) -> np.ndarray:
    """Frame ``index`` of OpenCV's vtest.avi (768x576 pedestrians) as ``(576, 768, 3) uint8 RGB``."""
    with av.open(str(DATA / "opencv" / "vtest.avi")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == index:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError("vtest.avi is shorter than expected")


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The benchmark data root (``$STREAMAD_DATA`` or ``../shared/data``); fails loudly when absent."""
    assert (DATA / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2").is_dir(), (
        f"UCSD Ped2 not found under {DATA}: set STREAMAD_DATA to the shared data folder")
    return DATA


@pytest.fixture(scope="session")
def ped2_model(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/ped2.yaml fitted once (training clips + calibration on the test split); returns the model dir."""
    from streamad.config import load_config
    from streamad.runtime.jobs import fit

    out = tmp_path_factory.mktemp("ped2") / "model"
    cfg = load_config(REPO / "examples" / "ped2.yaml", env={**os.environ, "STREAMAD_DATA": str(data_root)})
    fit(cfg, out, quiet=True)
    return out
