"""Sinks: where scored frames and alert events go (registered in :data:`streamad.registry.SINKS`).

* ``stdout``      a readable line per alert event (optionally per frame)
* ``jsonl``       alert events appended to a JSON Lines file
* ``kafka``       alert events to a Kafka topic, at least once, through a durable local spool (:mod:`.spool`)
* ``prometheus``  the pipeline's metrics served over HTTP for scraping
* ``annotated_video``  one MP4 per stream with boxes, scores, reasons and open alerts drawn on the frames
"""

from streamad.sinks import annotated_video, jsonl, kafka, prometheus, stdout  # noqa: F401  (registration runs)
