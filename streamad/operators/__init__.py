"""Operators, registered by ``kind`` name. One file per operator:

| kind | file | does |
|---|---|---|
| ``resize`` | resize.py | frame resize / grayscale |
| ``clip_window`` | window.py | anomalib clip windowing (``clip_length_in_frames``, ``frames_between_clips``, target frame) |
| ``foreground_regions`` | regions.py | AI-VAD foreground boxes from frame differences |
| ``optical_flow`` | flow.py | OpenCV DIS optical flow |
| ``velocity_features`` | features.py | AI-VAD velocity histograms per region |
| ``score`` | score.py | runs the video model |
| ``image_model`` | image_model.py | runs an image model per frame (anomaly map, score, region boxes) |
| ``smooth`` | smooth.py | temporal Gaussian smoothing of the frame score |
| ``threshold`` | threshold.py | min-max normalisation with the image threshold |
| ``alert`` | alert.py | event lifecycle (start / update / end) |
"""

from streamad.operators import (  # noqa: F401
    alert, features, flow, image_model, regions, resize, score, smooth, threshold, window)
