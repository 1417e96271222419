"""Queries: the DuckDB session, filters, search SQL, query resolution, knn, change, align, info."""
