"""streamad.sources.datasets: benchmark datasets in their official layouts, as streams with ground truth.

Each dataset module registers source kinds and offers pure listing functions (frame paths, labels, mask paths)
that evaluation and tests use without decoding: the video datasets ``ucsd_ped``, ``avenue`` and ``shanghaitech``
(ground truth attached by :mod:`.ground_truth`), and the image datasets ``folder``, ``mvtec`` and ``magnetic_tile``.
"""

from streamad.sources.datasets import avenue, folder, shanghaitech, ucsd  # noqa: F401
from streamad.sources.datasets.avenue import AvenueVideo, avenue_videos
from streamad.sources.datasets.folder import ImageSample, folder_samples, magnetic_tile_samples, mvtec_samples
from streamad.sources.datasets.shanghaitech import ShanghaiTechVideo, shanghaitech_videos
from streamad.sources.datasets.ucsd import UcsdVideo, ucsd_videos

__all__ = ["UcsdVideo", "ucsd_videos", "AvenueVideo", "avenue_videos", "ShanghaiTechVideo", "shanghaitech_videos",
           "ImageSample", "folder_samples", "mvtec_samples", "magnetic_tile_samples"]
