"""Find everything like this: score every fragment of a region against a query
(``score``), learn from labelled examples (``classify``), map the result (``heatmap``).

The public functions are ``mtquery.score``, ``mtquery.classify`` and
``mtquery.heatmap_raster`` (``mtquery.find.api``, ``mtquery.find.heatmap``); the modules:

- ``kernel``: the blocked matrix-vector product over a vector store (float32 / float16)
- ``stream``: a region's fragments in Arrow batches with their dot products
- ``sink``: the returned table, GeoParquet, heat map, detections, suggestions
- ``score`` / ``classify`` / ``labels`` / ``model``: the two tasks and their inputs
- ``heatmap``: lon/lat grids as GeoTIFF, PNG figure or web-layer PNG
"""
