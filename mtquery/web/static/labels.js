// Labels of the label loop: fragments marked positive (label 1) or negative (label 0), kept in
// the browser's storage per dataset (they survive a reload) and exported / imported as GeoJSON
// (one Feature per fragment: its footprint, properties unique_id, label, grid_cell, timestamp).

const MAX_LABELS = 1000;

export class Labels {
  constructor(dataset) {
    this.key = `mtquery.labels.${dataset}`;
    this.items = new Map();
    this.load();
  }

  load() {
    try {
      const doc = JSON.parse(localStorage.getItem(this.key) || 'null');
      if (doc) this.merge(doc);
    } catch (err) {
      console.warn('stored labels ignored:', err.message);
    }
  }

  save() {
    try {
      localStorage.setItem(this.key, JSON.stringify(this.geojson()));
    } catch (err) {
      console.warn('labels not stored:', err.message);
    }
  }

  get size() { return this.items.size; }
  get positives() { return [...this.items.values()].filter((f) => f.properties.label === 1); }
  get negatives() { return [...this.items.values()].filter((f) => f.properties.label === 0); }
  get(uid) { return this.items.get(uid); }

  /** Label a fragment (a GeoJSON Feature with properties.unique_id): 1 positive, 0 negative;
   * labelling it again with the same label removes it (a click toggles). */
  set(feature, label, toggle = true) {
    const p = feature.properties || {};
    const uid = p.unique_id;
    if (!uid) throw new Error('a label needs a unique_id');
    const old = this.items.get(uid);
    if (old && old.properties.label === label && toggle) {
      this.items.delete(uid);
    } else {
      if (!old && this.items.size >= MAX_LABELS) throw new Error(`at most ${MAX_LABELS} labels`);
      this.items.set(uid, { type: 'Feature', geometry: feature.geometry || null, properties: {
        unique_id: uid, label, grid_cell: p.grid_cell ?? null, timestamp: p.timestamp ?? null } });
    }
    this.save();
  }

  remove(uid) { this.items.delete(uid); this.save(); }
  clear() { this.items.clear(); this.save(); }

  geojson() {
    return { type: 'FeatureCollection', features: [...this.items.values()] };
  }

  /** Add the labels of a GeoJSON FeatureCollection (as exported); returns how many. */
  merge(doc) {
    if (!doc || doc.type !== 'FeatureCollection' || !Array.isArray(doc.features)) {
      throw new Error('not a GeoJSON FeatureCollection of labels');
    }
    let n = 0;
    for (const f of doc.features) {
      const p = f && f.properties;
      const label = p && (p.label === 1 || p.label === true || p.label === 'positive' ? 1
        : p.label === 0 || p.label === false || p.label === 'negative' ? 0 : null);
      if (!p || typeof p.unique_id !== 'string' || label === null) {
        throw new Error('each label needs properties unique_id and label (1 or 0)');
      }
      this.set(f, label, false);
      n += 1;
    }
    return n;
  }

  /** Labels whose footprint centre lies in box [w, s, e, n] (all when box is null). */
  within(box) {
    const all = [...this.items.values()];
    if (!box) return all;
    return all.filter((f) => {
      const c = centre(f);
      return !c || (c[0] >= box[0] && c[0] <= box[2] && c[1] >= box[1] && c[1] <= box[3]);
    });
  }
}

function centre(f) {
  const pts = [];
  const walk = (c) => (typeof c[0] === 'number' ? pts.push(c) : c.forEach(walk));
  if (f.geometry) walk(f.geometry.coordinates);
  if (!pts.length) return null;
  const xs = pts.map((p) => p[0]); const ys = pts.map((p) => p[1]);
  return [(Math.min(...xs) + Math.max(...xs)) / 2, (Math.min(...ys) + Math.max(...ys)) / 2];
}

/** Offer ``text`` as a download named ``name``. */
export function download(text, name, type = 'application/geo+json') {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}
