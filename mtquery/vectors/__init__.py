"""Vectors: the store, the exact scan, the ANN index, its build, calibration and shards."""
