// The map of the page, and only the map: the page works without it. MapLibre is loaded on
// demand; when WebGL is missing, MapLibre fails, or the map has not started after MAP_WAIT_MS,
// a one-line notice says so and the rest of the page (table, exports, chips, labels) goes on.
// draw() shows the page state on the map whenever the map is there (now or later).

const EMPTY = { type: 'FeatureCollection', features: [] };
export const MAP_WAIT_MS = 8000;
export const NOTICE = 'The map needs WebGL, which this browser does not provide here: the table, exports, image chips and labels work without it.';
const SLOW = 'The map has not started (it needs WebGL): the table, exports, image chips and labels work without it.';
const STOPS = ['#440154', '#3b528b', '#21918c', '#5ec962', '#fde725'];

export const view = { lib: null, map: null, loaded: false, failed: null, onClick: null, onMove: null };

function notice(text) {
  const n = document.getElementById('notice');
  n.textContent = text || '';
  n.hidden = !text;
}

function hasWebGL2() {
  try {
    return !!document.createElement('canvas').getContext('webgl2');
  } catch (err) {
    return false;
  }
}

function fail(reason) {
  view.failed = reason || 'unknown';
  notice(NOTICE);
  document.body.classList.add('no-map');
}

export async function startMap(info, hooks) {
  view.onClick = hooks.onClick;
  view.onMove = hooks.onMove;
  if (!hasWebGL2()) return fail('no WebGL 2 context');
  const timer = setTimeout(() => { if (!view.loaded && !view.failed) notice(SLOW); }, MAP_WAIT_MS);
  try {
    view.lib = await import('./maplibre-gl.mjs');
    const [x0, y0, x1, y1] = info.bbox || [-180, -70, 180, 80];
    const map = new view.lib.Map({ container: 'map', style: style(info.tiles), bounds: [[x0, y0], [x1, y1]],
      fitBoundsOptions: { padding: 40, maxZoom: 11 }, attributionControl: { compact: true },
      preserveDrawingBuffer: true, renderWorldCopies: true, boxZoom: false }); // shift-click: examples
    view.map = map;
    map.addControl(new view.lib.NavigationControl({ showCompass: false }));
    map.addControl(new view.lib.ScaleControl({ unit: 'metric' }), 'bottom-left');
    map.on('error', (e) => console.error('map:', e.error?.message || String(e)));
    map.on('load', () => {
      clearTimeout(timer);
      view.loaded = true;
      notice('');
      document.body.classList.remove('no-map');
      addLayers(map);
      map.on('click', (e) => view.onClick && view.onClick(e));
      map.on('moveend', () => view.onMove && view.onMove());
      hooks.onLoad();
    });
  } catch (err) {
    clearTimeout(timer);
    fail(err.message);
  }
}

function style(tiles) {
  const sources = {
    countries: { type: 'geojson', data: '/static/countries-110m.geojson', attribution: 'Natural Earth' },
  };
  const layers = [
    { id: 'water', type: 'background', paint: { 'background-color': '#dfe9f2' } },
    { id: 'countries-fill', type: 'fill', source: 'countries', paint: { 'fill-color': '#f3f1ea' } },
  ];
  if (tiles) {
    sources.tiles = { type: 'raster', tiles: [tiles], tileSize: 256, attribution: 'tiles: ' + new URL(tiles.replace(/[{}]/g, '')).host };
    layers.push({ id: 'tiles', type: 'raster', source: 'tiles' });
  }
  layers.push({ id: 'countries-line', type: 'line', source: 'countries', paint: { 'line-color': '#9a9a90', 'line-width': 0.7 } });
  return { version: 8, sources, layers };
}

const BLANK = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';

function addLayers(map) {
  for (const name of ['coverage', 'coverage-points', 'results', 'results-points', 'query', 'labels']) {
    map.addSource(name, { type: 'geojson', data: EMPTY });
  }
  map.addSource('heat', { type: 'image', url: BLANK, coordinates: [[0, 1], [1, 1], [1, 0], [0, 0]] });
  map.addLayer({ id: 'coverage-fill', type: 'fill', source: 'coverage', paint: { 'fill-color': '#e8a33d', 'fill-opacity': 0.12 } });
  map.addLayer({ id: 'coverage-dots', type: 'circle', source: 'coverage-points', maxzoom: 8,
    paint: { 'circle-color': '#e8a33d', 'circle-radius': 2.5, 'circle-opacity': 0.6 } });
  map.addLayer({ id: 'heat', type: 'raster', source: 'heat', layout: { visibility: 'none' },
    paint: { 'raster-opacity': 0.75, 'raster-resampling': 'nearest', 'raster-fade-duration': 0 } });
  map.addLayer({ id: 'results-fill', type: 'fill', source: 'results', paint: { 'fill-color': '#3b6fd0', 'fill-opacity': 0.85 } });
  map.addLayer({ id: 'results-line', type: 'line', source: 'results', paint: { 'line-color': '#222', 'line-width': 0.6 } });
  map.addLayer({ id: 'results-dots', type: 'circle', source: 'results-points', maxzoom: 9,
    paint: { 'circle-color': '#222', 'circle-radius': 4, 'circle-stroke-color': '#fff', 'circle-stroke-width': 1 } });
  map.addLayer({ id: 'highlight', type: 'line', source: 'results', filter: ['==', ['get', 'unique_id'], ''],
    paint: { 'line-color': '#ff8c00', 'line-width': 3 } });
  map.addLayer({ id: 'query-line', type: 'line', source: 'query', paint: {
    'line-color': ['match', ['get', 'role'], 'negative', '#a0309a', '#d7191c'], 'line-width': 2.5 } });
  map.addLayer({ id: 'labels-line', type: 'line', source: 'labels', paint: {
    'line-color': ['match', ['get', 'label'], 0, '#a0309a', '#1a9641'], 'line-width': 3 } });
}

export function bounds(features) {
  let b = null;
  const walk = (c) => {
    if (typeof c[0] !== 'number') return c.forEach(walk);
    b = b ? [Math.min(b[0], c[0]), Math.min(b[1], c[1]), Math.max(b[2], c[0]), Math.max(b[3], c[1])] : [c[0], c[1], c[0], c[1]];
  };
  features.forEach((f) => f.geometry && walk(f.geometry.coordinates));
  return b;
}

export function zoomTo(features, maxZoom = 13) {
  const b = bounds(features);
  if (view.loaded && b) view.map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 60, maxZoom, duration: 0 });
}

export function centres(fc) {
  return { type: 'FeatureCollection', features: fc.features.filter((f) => f.geometry).map((f) => {
    const b = bounds([f]);
    return { type: 'Feature', properties: f.properties, geometry: { type: 'Point', coordinates: [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] } };
  }) };
}

/** The visible region as [w, s, e, n] (null without a map). */
export function visibleBox() {
  if (!view.loaded) return null;
  const b = view.map.getBounds();
  const c = (v, lim) => +Math.max(-lim, Math.min(lim, v)).toFixed(4);
  return [c(b.getWest(), 180), c(b.getSouth(), 90), c(b.getEast(), 180), c(b.getNorth(), 90)];
}

export function colourRamp(prop, lo, hi) {
  const top = hi > lo ? hi : lo + 1e-9;
  const expr = ['interpolate', ['linear'], ['get', prop]];
  [...STOPS].reverse().forEach((c, i) => expr.push(lo + (top - lo) * i / (STOPS.length - 1), c));
  return expr;
}

/** Show ``scene`` (results, query outlines, labels, heat map, highlight) on the map. */
export function draw(scene) {
  if (!view.loaded) return;
  const map = view.map;
  const heat = scene.heat;
  map.getSource('results').setData(scene.results || EMPTY);
  map.getSource('results-points').setData(centres(scene.results || EMPTY));
  map.getSource('query').setData({ type: 'FeatureCollection', features: scene.query || [] });
  map.getSource('labels').setData({ type: 'FeatureCollection', features: scene.labels || [] });
  map.setPaintProperty('results-fill', 'fill-color', scene.fill || '#3b6fd0');
  map.setPaintProperty('results-fill', 'fill-opacity', scene.detections ? 0 : (heat && scene.showHeat ? 0.3 : 0.85));
  map.setPaintProperty('results-line', 'line-color', scene.detections ? '#00e5ff' : '#222');
  map.setPaintProperty('results-line', 'line-width', scene.detections ? 1.5 : 0.6);
  map.setFilter('highlight', ['==', ['get', 'unique_id'], scene.highlight || '']);
  if (heat && scene.showHeat) {
    const [w, s, e, n] = heat.bounds;
    map.getSource('heat').updateImage({ url: heat.image, coordinates: [[w, n], [e, n], [e, s], [w, s]] });
    map.setLayoutProperty('heat', 'visibility', 'visible');
  } else {
    map.setLayoutProperty('heat', 'visibility', 'none');
  }
}

export function drawCoverage(fc) {
  if (!view.loaded) return;
  view.map.getSource('coverage').setData(fc);
  view.map.getSource('coverage-points').setData(centres(fc));
}

/** Page pixel of a lon/lat (tests click there). */
export function pixel(lon, lat) {
  const p = view.map.project([lon, lat]);
  const r = view.map.getContainer().getBoundingClientRect();
  return [p.x + r.left, p.y + r.top];
}
