// The mtquery map page: a view of the library's JSON API (/api/*). Everything it shows comes
// from the server; nothing here computes a result. Test hook: window.mtq and
// document.body.dataset.status (loading | ready | busy | done | error).
import * as maplibregl from './maplibre-gl.mjs';

const $ = (id) => document.getElementById(id);
const EMPTY = { type: 'FeatureCollection', features: [] };
const state = { info: null, examples: [], negatives: [], query: null, rows: [], kind: null };
const mtq = { state, map: null, ready: false, queries: 0 };
window.mtq = mtq;

function status(s) { document.body.dataset.status = s; }

function message(text, error = false) {
  const m = $('message');
  m.textContent = text || '';
  m.className = error ? 'error' : '';
}

async function api(path, params = {}) {
  const clean = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ''));
  const r = await fetch(`${path}?${new URLSearchParams(clean)}`);
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function filters() {
  const p = {};
  for (const k of ['bbox', 'start', 'end']) {
    const v = $(k).value.trim();
    if (v) p[k] = v;
  }
  return p;
}

function dist(v) { return v === 0 ? '0' : (v < 0.001 ? v.toExponential(2) : v.toFixed(4)); }

function short(id) { return id && id.length > 16 ? `${id.slice(0, 16)}…` : (id || ''); }

function bounds(features) {
  const b = new maplibregl.LngLatBounds();
  const walk = (c) => (typeof c[0] === 'number' ? b.extend(c) : c.forEach(walk));
  features.forEach((f) => f.geometry && walk(f.geometry.coordinates));
  return b;
}

function zoomTo(features, maxZoom = 13) {
  const b = bounds(features);
  if (!b.isEmpty()) mtq.map.fitBounds(b, { padding: 60, maxZoom, duration: 0 });
}

function centres(fc) {
  return { type: 'FeatureCollection', features: fc.features.filter((f) => f.geometry).map((f) => {
    const b = bounds([f]).getCenter();
    return { type: 'Feature', properties: f.properties, geometry: { type: 'Point', coordinates: [b.lng, b.lat] } };
  }) };
}

function setData(name, data) { mtq.map.getSource(name).setData(data); }

function colourByDistance(features) {
  const d = features.map((f) => f.properties.distance).filter((v) => typeof v === 'number');
  if (!d.length) return '#3b6fd0';
  const lo = Math.min(...d); const hi = Math.max(...d) > lo ? Math.max(...d) : lo + 1e-9;
  $('legend-lo').textContent = dist(lo);
  $('legend-hi').textContent = dist(hi);
  const stops = ['#fde725', '#5ec962', '#21918c', '#3b528b', '#440154'];
  const expr = ['interpolate', ['linear'], ['get', 'distance']];
  stops.forEach((c, i) => expr.push(lo + (hi - lo) * i / (stops.length - 1), c));
  return expr;
}

function exportLinks(path, params) {
  for (const fmt of ['geojson', 'parquet', 'csv']) {
    const a = $(`export-${fmt}`);
    a.href = `${path}?${new URLSearchParams({ ...params, format: fmt })}`;
    a.download = `${path.split('/').pop()}.${fmt}`;
  }
  $('exports').hidden = false;
}

function listRows(features, kind) {
  const body = $('results').querySelector('tbody');
  body.replaceChildren();
  features.forEach((f) => {
    const p = f.properties;
    const tr = document.createElement('tr');
    tr.dataset.id = p.unique_id;
    const cells = [p.rank ?? '', short(p.unique_id), p.grid_cell, (p.timestamp || '').slice(0, 10),
      typeof p.distance === 'number' ? dist(p.distance) : ''];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 1) { td.className = 'id'; td.title = p.unique_id; }
      if (i === 3) td.title = p.timestamp || '';
      tr.appendChild(td);
    });
    const zoom = document.createElement('a');
    zoom.href = '#'; zoom.textContent = 'zoom'; zoom.className = 'zoom';
    zoom.addEventListener('click', (e) => { e.preventDefault(); zoomTo([f], 14); });
    const td = document.createElement('td');
    td.appendChild(zoom);
    tr.appendChild(td);
    tr.addEventListener('click', () => highlight(p.unique_id));
    body.appendChild(tr);
  });
  $('legend').hidden = kind !== 'knn' || !features.length;
}

function highlight(uid) {
  document.querySelectorAll('#results tr.active').forEach((tr) => tr.classList.remove('active'));
  const tr = document.querySelector(`#results tr[data-id="${CSS.escape(uid)}"]`);
  if (tr) tr.classList.add('active');
  mtq.map.setFilter('highlight', ['==', ['get', 'unique_id'], uid]);
}

function showExamples() {
  const box = $('examples');
  box.replaceChildren();
  for (const [list, cls] of [[state.examples, ''], [state.negatives, 'neg']]) {
    for (const f of list) {
      const s = document.createElement('span');
      s.className = cls;
      s.textContent = (cls ? '− ' : '+ ') + short(f.properties.unique_id);
      box.appendChild(s);
    }
  }
  const pos = state.examples.map((f) => ({ ...f, properties: { ...f.properties, role: 'example' } }));
  const neg = state.negatives.map((f) => ({ ...f, properties: { ...f.properties, role: 'negative' } }));
  return [...pos, ...neg];
}

function shareUrl(query) {
  const p = new URLSearchParams({ ...query, k: $('k').value, ...filters() });
  history.replaceState(null, '', `/?${p}`);
}

// One query: the fragments it starts from (outlined) and its neighbours (filled by distance).
async function runKnn(query, queryFeatures, fit = true) {
  status('busy');
  message('searching…');
  const params = { ...query, k: $('k').value, ...filters() };
  try {
    const [fc, qf] = await Promise.all([api('/api/knn', { ...params, format: 'geojson' }),
      queryFeatures ? Promise.resolve(queryFeatures) : fragmentsOf(query)]);
    state.query = query; state.rows = fc.features; state.kind = 'knn';
    mtq.map.setPaintProperty('results-fill', 'fill-color', colourByDistance(fc.features));
    setData('results', fc);
    setData('results-points', centres(fc));
    setData('query', { type: 'FeatureCollection', features: qf });
    listRows(fc.features, 'knn');
    exportLinks('/api/knn', params);
    $('summary').textContent = `${fc.features.length} nearest neighbours`;
    message('');
    shareUrl(query);
    if (fit) zoomTo([...qf, ...fc.features]);
    mtq.queries += 1;
    status('done');
  } catch (err) {
    message(err.message, true);
    status('error');
  }
}

async function fragmentsOf(query) {
  if (query.lat !== undefined) return [await api('/api/fragment', { lat: query.lat, lon: query.lon })];
  if (query.id) return [await api('/api/fragment', { id: query.id })];
  if (query.ids) {
    const get = (s) => Promise.all(s.split(',').filter(Boolean).map((id) => api('/api/fragment', { id })));
    state.examples = await get(query.ids);
    state.negatives = query.not_ids ? await get(query.not_ids) : [];
    return showExamples();
  }
  return [];
}

async function runSearch() {
  status('busy');
  const params = { ...filters(), limit: 1000 };
  try {
    const fc = await api('/api/search', { ...params, format: 'geojson' });
    state.rows = fc.features; state.kind = 'search';
    mtq.map.setPaintProperty('results-fill', 'fill-color', '#3b6fd0');
    setData('results', fc);
    setData('results-points', centres(fc));
    setData('query', EMPTY);
    listRows(fc.features, 'search');
    exportLinks('/api/search', params);
    $('summary').textContent = `${fc.features.length} fragment(s)${fc.features.length === 1000 ? ' (the first 1000)' : ''}`;
    message('');
    zoomTo(fc.features);
    status('done');
  } catch (err) {
    message(err.message, true);
    status('error');
  }
}

async function onClick(e) {
  const lat = +e.lngLat.lat.toFixed(6);
  const lon = +e.lngLat.wrap().lng.toFixed(6);
  const ev = e.originalEvent;
  if (!ev.shiftKey && !ev.altKey) {
    state.examples = []; state.negatives = [];
    showExamples();
    return runKnn({ lat, lon }, null, false);
  }
  try {
    const f = await api('/api/fragment', { lat, lon });
    const list = ev.altKey ? state.negatives : state.examples;
    const at = list.findIndex((g) => g.properties.unique_id === f.properties.unique_id);
    if (at >= 0) list.splice(at, 1); else list.push(f);
    const qf = showExamples();
    if (!state.examples.length) {
      message(state.negatives.length ? 'shift-click a positive example too' : '');
      return;
    }
    const query = { ids: state.examples.map((g) => g.properties.unique_id).join(',') };
    if (state.negatives.length) query.not_ids = state.negatives.map((g) => g.properties.unique_id).join(',');
    return runKnn(query, qf, false);
  } catch (err) {
    message(err.message, true);
    status('error');
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

function addLayers(map) {
  for (const name of ['coverage', 'coverage-points', 'results', 'results-points', 'query']) {
    map.addSource(name, { type: 'geojson', data: EMPTY });
  }
  map.addLayer({ id: 'coverage-fill', type: 'fill', source: 'coverage', paint: { 'fill-color': '#e8a33d', 'fill-opacity': 0.12 } });
  map.addLayer({ id: 'coverage-dots', type: 'circle', source: 'coverage-points', maxzoom: 8,
    paint: { 'circle-color': '#e8a33d', 'circle-radius': 2.5, 'circle-opacity': 0.6 } });
  map.addLayer({ id: 'results-fill', type: 'fill', source: 'results', paint: { 'fill-color': '#3b6fd0', 'fill-opacity': 0.85 } });
  map.addLayer({ id: 'results-line', type: 'line', source: 'results', paint: { 'line-color': '#222', 'line-width': 0.6 } });
  map.addLayer({ id: 'results-dots', type: 'circle', source: 'results-points', maxzoom: 9,
    paint: { 'circle-color': '#222', 'circle-radius': 4, 'circle-stroke-color': '#fff', 'circle-stroke-width': 1 } });
  map.addLayer({ id: 'highlight', type: 'line', source: 'results', filter: ['==', ['get', 'unique_id'], ''],
    paint: { 'line-color': '#ff8c00', 'line-width': 3 } });
  map.addLayer({ id: 'query-line', type: 'line', source: 'query', paint: {
    'line-color': ['match', ['get', 'role'], 'negative', '#a0309a', '#d7191c'], 'line-width': 2.5 } });
  map.on('click', 'results-fill', (e) => {
    const uid = e.features[0]?.properties.unique_id;
    if (uid) highlight(uid);
  });
}

function fromUrl() {
  const p = new URLSearchParams(location.search);
  if (p.get('k')) $('k').value = p.get('k');
  for (const k of ['bbox', 'start', 'end']) if (p.get(k)) $(k).value = p.get(k);
  if (p.get('bbox') || p.get('start') || p.get('end')) $('filters').open = true;
  if (p.get('lat') !== null && p.get('lon') !== null) return { lat: p.get('lat'), lon: p.get('lon') };
  if (p.get('id')) return { id: p.get('id') };
  if (p.get('ids')) {
    const q = { ids: p.get('ids') };
    if (p.get('not_ids')) q.not_ids = p.get('not_ids');
    return q;
  }
  return null;
}

async function main() {
  let info;
  try {
    info = await api('/api/info');
  } catch (err) {
    message(err.message, true);
    status('error');
    return;
  }
  state.info = info;
  $('dataset').textContent = `${info.dataset}: ${info.rows.toLocaleString()} fragments, ${info.grid_cells} cells, dim ${info.dim}` +
    (info.model ? `, model ${info.model}` : '');
  $('dataset').title = info.description || '';
  $('textbox').hidden = !info.text_query;
  const [x0, y0, x1, y1] = info.bbox || [-180, -70, 180, 80];
  const map = new maplibregl.Map({ container: 'map', style: style(info.tiles), bounds: [[x0, y0], [x1, y1]],
    fitBoundsOptions: { padding: 40, maxZoom: 11 }, attributionControl: { compact: true },
    preserveDrawingBuffer: true, renderWorldCopies: true, boxZoom: false }); // shift-click: examples
  mtq.map = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
  await new Promise((resolve) => map.on('load', resolve));
  addLayers(map);
  map.on('click', onClick);
  api('/api/coverage').then((fc) => { setData('coverage', fc); setData('coverage-points', centres(fc)); })
    .catch((err) => message(err.message, true));
  $('knn-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('text').value.trim();
    if (t) runKnn({ text: t }, [], true);
    else if (state.query) runKnn(state.query, null, false);
  });
  $('k').addEventListener('change', () => state.query && runKnn(state.query, null, false));
  $('search-go').addEventListener('click', runSearch);
  $('bbox-view').addEventListener('click', () => {
    const b = map.getBounds();
    const c = (v, lim) => Math.max(-lim, Math.min(lim, v)).toFixed(4);
    $('bbox').value = [c(b.getWest(), 180), c(b.getSouth(), 90), c(b.getEast(), 180), c(b.getNorth(), 90)].join(',');
  });
  mtq.ready = true;
  status('ready');
  const query = fromUrl();
  if (query) await runKnn(query, null, true);
}

main();
