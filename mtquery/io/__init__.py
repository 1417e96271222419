"""Datasets on disk and on the wire: resolution, remote reads, cost, extract, cache,
staging, optimize, validate."""
