"""streamad.sources.datasets: benchmark datasets in their official layouts, as streams with ground truth.

Each dataset module registers a source kind and offers a pure listing function (frame paths, labels, mask paths)
that evaluation and tests use without decoding.
"""

from streamad.sources.datasets import ucsd  # noqa: F401
from streamad.sources.datasets.ucsd import UcsdVideo, ucsd_videos

__all__ = ["UcsdVideo", "ucsd_videos"]
