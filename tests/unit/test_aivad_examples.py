"""One AI-VAD configuration for every dataset (issue 22): the Ped2, Avenue and ShanghaiTech examples differ only in
their sources, names and output paths, as the AI-VAD paper uses one configuration for all three."""

from __future__ import annotations

from pathlib import Path

from streamad.config import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DATASETS = ("ped2", "avenue", "shanghaitech")


def test_aivad_examples_share_every_operator_setting() -> None:
    configs = {d: load_config(EXAMPLES / f"{d}_aivad.yaml", env={"STREAMAD_DATA": "/data"}) for d in DATASETS}
    ops = {d: [op.model_dump() for op in c.operators] for d, c in configs.items()}
    for d in DATASETS[1:]:
        assert ops[d] == ops["ped2"], f"examples/{d}_aivad.yaml's operators differ from examples/ped2_aivad.yaml's"
    # the settings are scale-aware: no region size in pixels, velocities relative to the region's height
    regions = next(op for op in ops["ped2"] if op["kind"] == "object_regions")
    velocity = next(op for op in ops["ped2"] if op["kind"] == "velocity_features")
    assert regions["min_bbox_area_fraction"] is not None
    assert regions["detector_min_scale"] == 1.4  # far people: frames over 366 px are also detected in tiles
    assert velocity["velocity_units"] in ("box_height", "both")
    # no test labels at fit time: fitted on the training videos not held out, calibrated on the held-out ones
    assert {c.fit.threshold.method for c in configs.values()} == {"false_alarm_rate"}
    for d, c in configs.items():
        (train,), (val,) = c.fit.train, c.fit.validation
        assert (train.split, val.split) == ("train", "train"), f"examples/{d}_aivad.yaml validates on {val.split}"
        assert (train.holdout.part, val.holdout.part) == ("fit", "held_out")
        assert train.holdout.model_dump(exclude={"part"}) == val.holdout.model_dump(exclude={"part"})
    assert {c.sinks[0].path for c in configs.values()} == {f"runs/{d}_aivad/alerts.jsonl" for d in DATASETS}
