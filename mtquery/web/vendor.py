"""Refresh the vendored browser files in ``mtquery/web/static/`` from npm release tarballs
(see ``static/VENDORED.md``): ``python -m mtquery.web.vendor maplibre-gl-X.tgz
world-atlas-Y.tgz``. Not used at run time.

MapLibre GL JS: ``dist/maplibre-gl.mjs``, its worker, its CSS and LICENSE are copied as they
are. world-atlas: ``countries-110m.json`` (TopoJSON) is decoded to GeoJSON here, rings that
cross the antimeridian are split at +-180 so flat renderers (MapLibre, matplotlib) draw no
stripes across the world, and coordinates are rounded to 3 decimals (~100 m, well under
the 1:110m detail)."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
MAPLIBRE_FILES = {"package/dist/maplibre-gl.mjs": "maplibre-gl.mjs",
                  "package/dist/maplibre-gl-worker.mjs": "maplibre-gl-worker.mjs",
                  "package/dist/maplibre-gl.css": "maplibre-gl.css",
                  "package/LICENSE.txt": "LICENSE.maplibre-gl.txt"}
WORLD_FILES = {"package/LICENSE": "LICENSE.world-atlas.txt"}
COUNTRIES = "countries-110m.geojson"


def _decode_arcs(topo: dict) -> list[list[tuple[float, float]]]:
    sx, sy = topo["transform"]["scale"]
    tx, ty = topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        pts = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            pts.append((x * sx + tx, y * sy + ty))
        arcs.append(pts)
    return arcs


def _ring(arcs: list[list[tuple[float, float]]], refs: list[int]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for i in refs:
        pts = arcs[i] if i >= 0 else arcs[~i][::-1]
        out.extend(pts[1:] if out else pts)
    return out


def _split_antimeridian(rings: list[list[tuple[float, float]]]):
    """A polygon (exterior + holes) as shapely geometry within lon -180..180."""
    from shapely.geometry import Polygon, box
    from shapely.ops import unary_union

    unwrapped = []
    crossed = False
    for ring in rings:
        lon0, pts = ring[0][0], [ring[0]]
        for x, y in ring[1:]:
            while x - lon0 > 180:
                x -= 360
            while x - lon0 < -180:
                x += 360
            crossed |= abs(x - ring[0][0]) > 180 or x > 180 or x < -180
            pts.append((x, y))
            lon0 = x
        if abs(pts[-1][0] - pts[0][0]) > 180:  # circles a pole (Antarctica): close over it
            pole = -90.0 if sum(y for _, y in pts) < 0 else 90.0
            pts += [(pts[-1][0], pole), (pts[0][0], pole)]
        unwrapped.append(pts)
    poly = Polygon(unwrapped[0], unwrapped[1:]).buffer(0)
    if not crossed:
        return poly
    from shapely.affinity import translate

    parts = [translate(poly.intersection(box(w - 180, -90, w + 180, 90)), -w)
             for w in (-360, 0, 360)]
    return unary_union([p for p in parts if not p.is_empty])


def countries_geojson(topo: dict) -> dict:
    """world-atlas TopoJSON -> GeoJSON FeatureCollection (name property only)."""
    from shapely.geometry import mapping

    arcs = _decode_arcs(topo)
    features = []
    for geom in topo["objects"]["countries"]["geometries"]:
        polys = {"Polygon": [geom.get("arcs", [])],
                 "MultiPolygon": geom.get("arcs", [])}.get(geom.get("type"), [])
        if not polys:
            continue
        from shapely.ops import unary_union

        shape = unary_union([_split_antimeridian([_ring(arcs, r) for r in p]) for p in polys])
        gj = json.loads(json.dumps(mapping(shape)), parse_float=lambda s: round(float(s), 3))
        features.append({"type": "Feature", "properties": {
            "name": geom.get("properties", {}).get("name")}, "geometry": gj})
    return {"type": "FeatureCollection", "features": features}


def _extract(tgz: Path, files: dict[str, str]) -> tarfile.TarFile:
    tar = tarfile.open(tgz)
    for member, name in files.items():
        data = tar.extractfile(member)
        if data is None:
            raise SystemExit(f"{tgz} has no {member}")
        (STATIC / name).write_bytes(data.read())
    return tar


def refresh(maplibre_tgz: Path, world_atlas_tgz: Path) -> None:
    _extract(maplibre_tgz, MAPLIBRE_FILES).close()
    tar = _extract(world_atlas_tgz, WORLD_FILES)
    data = tar.extractfile("package/countries-110m.json")
    if data is None:
        raise SystemExit(f"{world_atlas_tgz} has no countries-110m.json")
    gj = countries_geojson(json.loads(data.read()))
    (STATIC / COUNTRIES).write_text(json.dumps(gj, separators=(",", ":")), encoding="utf-8")
    tar.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m mtquery.web.vendor maplibre-gl-X.tgz "
                         "world-atlas-Y.tgz")
    refresh(Path(sys.argv[1]), Path(sys.argv[2]))
