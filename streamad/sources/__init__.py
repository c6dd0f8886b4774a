"""streamad.sources: where frames come from.

Importing this package registers the built-in source kinds: ``video_file`` (PyAV / decord), ``image_folder``, the
datasets (``ucsd_ped``) and ``live`` (RTSP cameras, HTTP(S) video URLs, ``/dev/videoN``; :mod:`.rtsp`). File
sources share real-time pacing and ``max_frames`` (:mod:`streamad.sources.pacing`).
"""

# OpenCV first: decord (imported lazily by video_file) bundles an old zlib that breaks OpenCV's PNG reader when it
# is loaded before OpenCV.
import cv2  # noqa: F401

from streamad.sources import datasets, image_folder, live, video_file  # noqa: F401
from streamad.sources.pacing import FileSource, paced

__all__ = ["FileSource", "paced"]
