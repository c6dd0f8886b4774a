"""Operators, registered by ``kind`` name; each lives in the file named after its kind (``clip_window`` in
``clip_window.py``). ``tests/unit/test_layout.py`` checks this table against :data:`streamad.registry.OPERATORS`.

| kind | does |
|---|---|
| ``alert`` | event lifecycle (start / update / end) |
| ``clip_features`` | FUVAS whole-frame deep features of a clip on a grid of cells |
| ``clip_window`` | anomalib clip windowing (``clip_length_in_frames``, ``frames_between_clips``, target frame) |
| ``deep_features`` | AI-VAD deep (appearance) vectors per region from a CNN backbone |
| ``foreground_regions`` | AI-VAD foreground boxes from frame differences |
| ``image_model`` | runs an image model per frame (anomaly map, score, region boxes) |
| ``object_regions`` | AI-VAD region extractor: object detector + foreground boxes |
| ``optical_flow`` | OpenCV DIS optical flow (torchvision RAFT with local weights) |
| ``pose_features`` | AI-VAD pose: MoveNet COCO-17 keypoints normalised to each region |
| ``resize`` | frame resize / grayscale |
| ``smooth`` | temporal Gaussian smoothing of the frame score |
| ``threshold`` | min-max normalisation with the image threshold |
| ``velocity_features`` | AI-VAD velocity histograms per region |
| ``video_model`` | runs the video model on each clip (``score`` is a deprecated alias) |
"""

from streamad.operators import (  # noqa: F401
    alert, clip_features, clip_window, deep_features, foreground_regions, image_model, object_regions, optical_flow, pose_features,
    resize, smooth, threshold, velocity_features, video_model)
