"""streamad: streaming video anomaly detection.

Video sources -> a dataflow of operators (clip windowing, regions, optical flow, features, model scoring,
normalisation, smoothing, alert lifecycle) -> sinks (stdout, JSONL, Kafka alerts, Prometheus metrics).
Models and data conventions follow anomalib (AI-VAD, image models, clip indexing, thresholds, min-max normalisation).
"""

__version__ = "0.1.0"
