"""The dataflow engine (stage threads, bounded queues, backpressure, shutdown) and the fit / eval / serve drivers."""
