"""Operators, registered by ``kind`` name. One file per operator:

| kind | file | does |
|---|---|---|
| ``resize`` | resize.py | frame resize / grayscale |
| ``clip_window`` | window.py | anomalib clip windowing (``clip_length_in_frames``, ``frames_between_clips``, target frame) |
| ``foreground_regions`` | regions.py | AI-VAD foreground boxes from frame differences |
| ``object_regions`` | object_regions.py | AI-VAD region extractor: object detector + foreground boxes |
| ``optical_flow`` | flow.py | OpenCV DIS optical flow (torchvision RAFT with local weights) |
| ``velocity_features`` | features.py | AI-VAD velocity histograms per region |
| ``pose_features`` | pose.py | AI-VAD pose: MoveNet COCO-17 keypoints normalised to each region |
| ``deep_features`` | appearance.py | AI-VAD deep (appearance) vectors per region from a CNN backbone |
| ``score`` | score.py | runs the video model |
| ``image_model`` | image_model.py | runs an image model per frame (anomaly map, score, region boxes) |
| ``smooth`` | smooth.py | temporal Gaussian smoothing of the frame score |
| ``threshold`` | threshold.py | min-max normalisation with the image threshold |
| ``alert`` | alert.py | event lifecycle (start / update / end) |
"""

from streamad.operators import (  # noqa: F401
    alert, appearance, features, flow, image_model, object_regions, pose, regions, resize, score, smooth, threshold,
    window)
