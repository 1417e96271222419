// The mtquery map page: a view of the library's JSON API (/api/*). Everything it shows comes
// from the server; nothing here computes a result. It never waits for the map: a query from
// the URL or the form runs as soon as /api/info answers and fills the table; the map (view.js)
// draws the same state when it is there. Test hook: window.mtq and
// document.body.dataset.status (loading | ready | busy | done | error).
import { Labels, download } from './labels.js';
import { colourRamp, draw, drawCoverage, pixel, startMap, view, visibleBox, zoomTo } from './view.js';

const $ = (id) => document.getElementById(id);
const state = { info: null, mode: 'knn', examples: [], negatives: [], query: null, rows: [], kind: null,
  queryFeatures: [], highlight: '', heat: null, heatKind: null, labels: null, fill: null, findParams: null };
const mtq = { state, view, ready: false, queries: 0, finds: 0, heats: 0, pixel, get map() { return view.map; },
  get mapLoaded() { return view.loaded; } };
window.mtq = mtq;

function status(s) { document.body.dataset.status = s; }

function message(text, error = false) {
  const m = $('message');
  m.textContent = (text || '').split('\n')[0];
  m.className = error ? 'error' : '';
}

function fail(err) {
  message(err.message, true);
  status('error');
}

async function api(path, params = {}) {
  const r = await fetch(url(path, params));
  const body = await r.json().catch(() => ({ error: `${r.status} ${r.statusText}` }));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

function url(path, params) {
  const clean = Object.fromEntries(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ''));
  return `${path}?${new URLSearchParams(clean)}`;
}

function filters() {
  const p = {};
  for (const k of ['bbox', 'start', 'end']) {
    const v = $(k).value.trim();
    if (v) p[k] = v;
  }
  return p;
}

const chipUrl = (uid) => url('/api/chip', { unique_id: uid });
const num = (v) => (v === 0 ? '0' : (Math.abs(v) < 0.001 ? v.toExponential(2) : v.toFixed(4)));
const short = (id) => (id && id.length > 16 ? `${id.slice(0, 16)}…` : (id || ''));

function chip(uid, size) {
  const img = document.createElement('img');
  img.className = 'chip';
  img.src = chipUrl(uid);
  img.width = size; img.height = size;
  img.alt = `image of ${uid}`;
  img.loading = 'lazy';
  return img;
}

function redraw() {
  draw({ results: { type: 'FeatureCollection', features: state.rows }, query: [...state.queryFeatures, ...exampleFeatures()],
    labels: state.labels ? state.labels.geojson().features : [], fill: state.fill, highlight: state.highlight,
    detections: state.kind === 'detections',
    heat: state.heat, showHeat: state.heat && (state.heatKind === 'find' || $('heat-toggle').checked) });
}

function exampleFeatures() {
  const tag = (list, role) => list.map((f) => ({ ...f, properties: { ...f.properties, role } }));
  return [...tag(state.examples, 'example'), ...tag(state.negatives, 'negative')];
}

// ------------------------------------------------------------------ the table

const KINDS = {
  knn: { score: 'distance', head: 'distance' },
  search: { score: null, head: '' },
  detections: { score: 'score', head: 'score' },
};

function listRows(features, kind) {
  $('results').querySelector('thead th.score').textContent = KINDS[kind].head;
  const body = $('results').querySelector('tbody');
  body.replaceChildren();
  features.forEach((f) => {
    const p = f.properties;
    const tr = document.createElement('tr');
    tr.dataset.id = p.unique_id;
    const td0 = document.createElement('td');
    td0.appendChild(chip(p.unique_id, 40));
    tr.appendChild(td0);
    const key = KINDS[kind].score;
    const cells = [p.rank ?? '', short(p.unique_id), p.grid_cell, (p.timestamp || '').slice(0, 10),
      key && typeof p[key] === 'number' ? num(p[key]) : ''];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 1) { td.className = 'id'; td.title = p.unique_id; }
      if (i === 3) td.title = p.timestamp || '';
      tr.appendChild(td);
    });
    const td = document.createElement('td');
    td.className = 'acts';
    if (kind === 'detections') {
      td.append(button('✓', 'accept (a): a positive label', () => judge(f, 1)),
        button('✗', 'reject (r): a negative label', () => judge(f, 0)));
      const l = state.labels.get(p.unique_id);
      if (l) tr.classList.add(l.properties.label ? 'accepted' : 'rejected');
    }
    td.appendChild(button('zoom', 'zoom to it', () => zoomTo([f], 14), 'zoom'));
    tr.appendChild(td);
    tr.addEventListener('click', () => select(p.unique_id));
    body.appendChild(tr);
  });
  $('legend').hidden = kind !== 'knn' || !features.length;
}

function button(text, title, fn, cls = '') {
  const b = document.createElement('button');
  b.type = 'button'; b.textContent = text; b.title = title; b.className = cls;
  b.addEventListener('click', (e) => { e.stopPropagation(); fn(); });
  return b;
}

function select(uid) {
  state.highlight = uid;
  document.querySelectorAll('#results tr.active').forEach((tr) => tr.classList.remove('active'));
  const tr = document.querySelector(`#results tr[data-id="${CSS.escape(uid)}"]`);
  if (tr) { tr.classList.add('active'); tr.scrollIntoView({ block: 'nearest' }); }
  const f = state.rows.find((g) => g.properties.unique_id === uid);
  if (f) showFragment(f);
  redraw();
}

function showFragment(f) {
  const box = $('fragment');
  const p = f.properties;
  box.replaceChildren(chip(p.unique_id, 128));
  const t = document.createElement('div');
  t.innerHTML = '<div class="id"></div><div></div>';
  t.firstChild.textContent = p.unique_id;
  t.lastChild.textContent = `${p.grid_cell || ''} ${(p.timestamp || '').slice(0, 19)}`;
  t.append(button('+ label', 'label it positive', () => { label(f, 1); }),
    button('− label', 'label it negative', () => { label(f, 0); }));
  box.appendChild(t);
  box.hidden = false;
}

// ------------------------------------------------------------------ nearest neighbours

function exportLinks(path, params, formats = ['geojson', 'parquet', 'csv']) {
  for (const fmt of ['geojson', 'parquet', 'csv']) {
    const a = $(`export-${fmt}`);
    a.hidden = !formats.includes(fmt);
    a.href = url(path, { ...params, format: fmt });
    a.download = `${path.split('/').pop()}.${fmt}`;
  }
  $('exports').hidden = false;
}

function show(fc, kind, summary) {
  state.rows = fc.features; state.kind = kind;
  listRows(fc.features, kind);
  $('summary').textContent = summary;
}

function shareUrl(query) {
  history.replaceState(null, '', `/?${new URLSearchParams({ ...query, k: $('k').value, ...filters() })}`);
}

async function runKnn(query, queryFeatures, fit = true) {
  status('busy');
  message('searching…');
  const params = { ...query, k: $('k').value, ...filters() };
  try {
    const fc = await api('/api/knn', { ...params, format: 'geojson' });
    state.query = query;
    const d = fc.features.map((f) => f.properties.distance).filter((v) => typeof v === 'number');
    const lo = d.length ? Math.min(...d) : 0; const hi = d.length ? Math.max(...d) : 1;
    $('legend-lo').textContent = num(lo); $('legend-hi').textContent = num(hi);
    state.fill = colourRamp('distance', lo, hi);
    show(fc, 'knn', `${fc.features.length} nearest neighbours`);
    exportLinks('/api/knn', params);
    message('');
    shareUrl(query);
    mtq.queries += 1;
    status('done');
    state.queryFeatures = queryFeatures || await fragmentsOf(query).catch(() => []);
    if (state.queryFeatures.length === 1) showFragment(state.queryFeatures[0]);
    redraw();
    if (fit) zoomTo([...state.queryFeatures, ...fc.features]);
    if ($('heat-toggle').checked) runHeat();
  } catch (err) {
    fail(err);
  }
}

async function fragmentsOf(query) {
  if (query.lat !== undefined) return [await api('/api/fragment', { lat: query.lat, lon: query.lon })];
  if (query.id) return [await api('/api/fragment', { id: query.id })];
  if (query.ids) {
    const get = (s) => Promise.all(s.split(',').filter(Boolean).map((id) => api('/api/fragment', { id })));
    state.examples = await get(query.ids);
    state.negatives = query.not_ids ? await get(query.not_ids) : [];
    showExamples();
  }
  return [];
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
}

async function runSearch() {
  status('busy');
  const params = { ...filters(), limit: 1000 };
  try {
    const fc = await api('/api/search', { ...params, format: 'geojson' });
    state.fill = null; state.queryFeatures = [];
    show(fc, 'search', `${fc.features.length} fragment(s)${fc.features.length === 1000 ? ' (the first 1000)' : ''}`);
    exportLinks('/api/search', params);
    message('');
    redraw();
    zoomTo(fc.features);
    status('done');
  } catch (err) {
    fail(err);
  }
}

// ------------------------------------------------------------------ clicks on the map

async function onClick(e) {
  const lat = +e.lngLat.lat.toFixed(6);
  const lon = +e.lngLat.wrap().lng.toFixed(6);
  const ev = e.originalEvent;
  try {
    if (state.mode === 'label') {
      const f = await api('/api/fragment', { lat, lon });
      return label(f, ev.altKey ? 0 : 1);
    }
    if (!ev.shiftKey && !ev.altKey) {
      state.examples = []; state.negatives = [];
      showExamples();
      return runKnn({ lat, lon }, null, false);
    }
    const f = await api('/api/fragment', { lat, lon });
    const list = ev.altKey ? state.negatives : state.examples;
    const at = list.findIndex((g) => g.properties.unique_id === f.properties.unique_id);
    if (at >= 0) list.splice(at, 1); else list.push(f);
    showExamples();
    if (!state.examples.length) {
      message(state.negatives.length ? 'shift-click a positive example too' : '');
      return redraw();
    }
    const query = { ids: state.examples.map((g) => g.properties.unique_id).join(',') };
    if (state.negatives.length) query.not_ids = state.negatives.map((g) => g.properties.unique_id).join(',');
    return runKnn(query, [], false);
  } catch (err) {
    fail(err);
  }
}

// ------------------------------------------------------------------ labels and find more

function label(f, value) {
  try {
    state.labels.set(f, value);
    showLabels();
    showFragment(f);
    redraw();
  } catch (err) {
    fail(err);
  }
}

function judge(f, value) {
  state.labels.set(f, value, false);
  showLabels();
  listRows(state.rows, state.kind);
  const i = state.rows.indexOf(f);
  const next = state.rows[i + 1];
  select(next ? next.properties.unique_id : f.properties.unique_id);
}

function showLabels() {
  const L = state.labels;
  $('label-count').textContent = `${L.positives.length} positive, ${L.negatives.length} negative`;
  const box = $('label-chips');
  box.replaceChildren();
  for (const f of L.geojson().features) {
    const c = chip(f.properties.unique_id, 32);
    c.className = `chip ${f.properties.label ? 'pos' : 'neg'}`;
    c.title = `${f.properties.label ? 'positive' : 'negative'} ${f.properties.unique_id} (click: remove)`;
    c.addEventListener('click', () => { L.remove(f.properties.unique_id); showLabels(); redraw(); });
    box.appendChild(c);
  }
}

async function findMore() {
  const box = visibleBox();
  const inView = state.labels.within(box);
  const pos = inView.filter((f) => f.properties.label === 1).map((f) => f.properties.unique_id);
  const neg = inView.filter((f) => f.properties.label === 0).map((f) => f.properties.unique_id);
  if (!pos.length) return message('label a positive fragment in view first (label mode: click it)', true);
  const common = { bbox: box ? box.join(',') : undefined, start: filters().start, end: filters().end, limit: $('find-n').value };
  const [path, params] = pos.length === 1 && !neg.length
    ? ['/api/score', { ...common, ids: pos[0] }]
    : ['/api/classify', { ...common, positives: pos.join(','), negatives: neg.join(',') }];
  status('busy');
  message('finding more…');
  try {
    const r = await api(path, params);
    state.heat = r.heatmap; state.heatKind = 'find'; state.fill = '#3b6fd0'; state.queryFeatures = [];
    KINDS.detections = { score: r.value, head: r.value };
    show(r.detections, 'detections', `${r.detections.features.length} detections (${r.method})`);
    exportLinks(path, params, ['geojson', 'parquet']);
    heatLegend(r.heatmap, r.value === 'probability' ? 'probability' : 'similarity');
    message(r.note || '');
    redraw();
    mtq.finds += 1;
    status('done');
    if (r.detections.features.length) select(r.detections.features[0].properties.unique_id);
  } catch (err) {
    fail(err);
  }
}

function heatLegend(heat, what) {
  $('heat-legend').hidden = !heat;
  if (!heat) return;
  $('heat-lo').textContent = num(heat.lo);
  $('heat-hi').textContent = num(heat.hi);
  $('heat-what').textContent = what;
}

let heatTimer = null;
let heatSeq = 0;
async function runHeat() {
  if (!$('heat-toggle').checked) {
    if (state.heatKind === 'query') { state.heat = null; heatLegend(null); }
    return redraw();
  }
  if (!state.query) return message('run a query first: the heat map shows its similarity over the view');
  const box = visibleBox();
  const seq = ++heatSeq; // a later call (the view moved again) wins
  try {
    const r = await api('/api/score', { ...state.query, ...filters(), bbox: box ? box.join(',') : undefined, limit: 1 });
    if (seq !== heatSeq || !$('heat-toggle').checked) return;
    state.heat = r.heatmap; state.heatKind = 'query';
    heatLegend(r.heatmap, 'similarity');
    mtq.heats += 1;
    redraw();
  } catch (err) {
    fail(err);
  }
}

function onMove() {
  if (!$('heat-toggle').checked || state.heatKind !== 'query') return;
  clearTimeout(heatTimer);
  heatTimer = setTimeout(runHeat, 400);
}

function onKey(e) {
  if (state.kind !== 'detections' || /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
  const i = state.rows.findIndex((f) => f.properties.unique_id === state.highlight);
  const f = state.rows[i];
  if ((e.key === 'a' || e.key === 'r') && f) judge(f, e.key === 'a' ? 1 : 0);
  else if ((e.key === 'ArrowDown' || e.key === 'j') && state.rows[i + 1]) select(state.rows[i + 1].properties.unique_id);
  else if ((e.key === 'ArrowUp' || e.key === 'k') && i > 0) select(state.rows[i - 1].properties.unique_id);
  else return;
  e.preventDefault();
}

async function importLabels(file) {
  try {
    const n = state.labels.merge(JSON.parse(await file.text()));
    showLabels(); redraw();
    message(`${n} label(s) imported`);
  } catch (err) {
    fail(new Error(`cannot import ${file.name}: ${err.message}`));
  }
}

// ------------------------------------------------------------------ start

function setMode(mode) {
  state.mode = mode;
  document.body.dataset.mode = mode;
  $('hint-knn').hidden = mode !== 'knn';
  $('hint-label').hidden = mode !== 'label';
}

function fromUrl() {
  const p = new URLSearchParams(location.search);
  if (p.get('k')) $('k').value = p.get('k');
  for (const k of ['bbox', 'start', 'end']) if (p.get(k)) $(k).value = p.get(k);
  if (p.get('bbox') || p.get('start') || p.get('end')) $('filters').open = true;
  if (p.get('mode') === 'label') { setMode('label'); $('mode-label').checked = true; }
  if (p.get('lat') !== null && p.get('lon') !== null) return { lat: p.get('lat'), lon: p.get('lon') };
  if (p.get('id')) return { id: p.get('id') };
  if (p.get('ids')) {
    const q = { ids: p.get('ids') };
    if (p.get('not_ids')) q.not_ids = p.get('not_ids');
    return q;
  }
  return null;
}

function wire() {
  $('knn-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('text').value.trim();
    if (t) runKnn({ text: t }, [], true);
    else if (state.query) runKnn(state.query, null, false);
  });
  $('k').addEventListener('change', () => state.query && runKnn(state.query, null, false));
  $('search-go').addEventListener('click', runSearch);
  $('bbox-view').addEventListener('click', () => { const b = visibleBox(); if (b) $('bbox').value = b.join(','); });
  for (const m of ['knn', 'label']) $(`mode-${m}`).addEventListener('change', () => setMode(m));
  $('find-more').addEventListener('click', findMore);
  $('heat-toggle').addEventListener('change', runHeat);
  $('labels-export').addEventListener('click', () => download(JSON.stringify(state.labels.geojson()), 'labels.geojson'));
  $('labels-import').addEventListener('change', (e) => e.target.files[0] && importLabels(e.target.files[0]));
  $('labels-clear').addEventListener('click', () => { state.labels.clear(); showLabels(); redraw(); });
  document.addEventListener('keydown', onKey);
}

async function main() {
  let info;
  try {
    info = await api('/api/info');
  } catch (err) {
    return fail(err);
  }
  state.info = info;
  $('dataset').textContent = `${info.dataset}: ${info.rows.toLocaleString()} fragments, ${info.grid_cells} cells, dim ${info.dim}` +
    (info.model ? `, model ${info.model}` : '');
  $('dataset').title = info.description || '';
  $('textbox').hidden = !info.text_query;
  state.labels = new Labels(info.dataset);
  wire();
  showLabels();
  startMap(info, { onClick, onMove, onLoad: () => {
    redraw();
    if (state.rows.length) zoomTo([...state.queryFeatures, ...state.rows]);
    api('/api/coverage').then(drawCoverage).catch((err) => message(err.message, true));
  } });
  setMode(state.mode);
  const query = fromUrl();
  mtq.ready = true;
  status('ready');
  if (query) await runKnn(query, null, true);
}

main();
