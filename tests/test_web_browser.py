"""The map page in a real headless Chromium (Debian's ``chromium``; CI installs it).

(a) classic headless, ``--disable-gpu``, a virtual time budget, ``--dump-dom``: a shared link
    fills the table with the five neighbours and says the map needs WebGL (never a blank page);
(b) software GL (SwiftShader) over DevTools: a link runs its query, a click runs one, a
    shift-click adds an example, an API error shows its one line; the label loop: three
    positive and three negative clicks, "find more", the heat-map layer, detection rows with
    their image chips, accept / reject keys, labels exported as GeoJSON (a real download),
    kept over a reload;
(c) a screenshot of each state in pytest's temporary folder (its path is printed), never in
    the checkout.

Not skipped when Chromium is missing: the page is only tested if a browser runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

from webdriver import Chromium, find_chromium

IDS_JS = "[...document.querySelectorAll('#results tbody tr')].map((tr) => tr.dataset.id)"
DONE = "document.body && document.body.dataset.status === 'done'"
QUERY = {"lat": 37.6803, "lon": -75.548, "k": 5}
VIRGINIA = "-75.75,37.55,-75.45,37.8"
#: virtual milliseconds the classic headless run may take (the notice comes after 8 s)
BUDGET_MS = 30_000
HEAT_DRAWN = ("(() => { const s = mtq.map.getSource('heat'); "
              "return !!(s.image && s.image.width === mtq.state.heat.width); })()")


def api_ids(server, path: str = "knn", **params) -> list[str]:
    with urllib.request.urlopen(f"{server.url}api/{path}?{urlencode(params)}", timeout=60) as r:
        return [row["unique_id"] for row in json.load(r)]


def shot(b: Chromium, folder: Path, name: str) -> Path:
    return b.screenshot(folder / f"{name}.png")


class _Dom(HTMLParser):
    """Row ids of the results table and the notice of a dumped page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.notice: str | None = None
        self.status = None
        self._in_notice = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.status = a.get("data-status")
        if tag == "tr" and a.get("data-id"):
            self.ids.append(a["data-id"])
        if a.get("id") == "notice":
            self._in_notice = "hidden" not in a
            self.notice = ""

    def handle_data(self, data):
        if self._in_notice:
            self.notice += data

    def handle_endtag(self, tag):
        self._in_notice = False


def classic_binaries() -> list[list[str]]:
    """The classic headless browsers here: Debian's old headless shell when installed, and
    ``chromium --headless``."""
    out = [[p] for p in [shutil.which("chromium-headless-shell")] if p]
    binary = find_chromium()
    assert binary, "chromium is not installed: apt-get install -y chromium"
    return out + [[binary, "--headless"]]


def test_never_blank_without_webgl(server, tmp_path):
    """(a): --disable-gpu, classic headless, virtual time: five ids and the WebGL notice."""
    url = f"{server.url}?{urlencode(QUERY)}"
    want = api_ids(server, **QUERY)
    for cmd in classic_binaries():
        out = subprocess.run([*cmd, "--disable-gpu", "--no-sandbox", "--no-first-run",
                              f"--user-data-dir={tmp_path / 'profile'}",
                              f"--virtual-time-budget={BUDGET_MS}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=180)
        dom = _Dom()
        dom.feed(out.stdout)
        assert dom.status == "done", (cmd, dom.status, out.stderr[-500:])
        assert dom.ids == want, cmd
        assert dom.notice and "needs WebGL" in dom.notice and "table" in dom.notice, cmd
        assert "\n" not in dom.notice.strip()
        (tmp_path / f"dom-{Path(cmd[0]).name}.html").write_text(out.stdout)
    # (c): the same state as a picture
    png = tmp_path / "web_no_webgl.png"
    subprocess.run([*cmd, "--disable-gpu", "--no-sandbox", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,800",
                    f"--virtual-time-budget={BUDGET_MS}", f"--screenshot={png}", url],
                   capture_output=True, timeout=180)
    assert png.stat().st_size > 10_000


def pixel(b: Chromium, lon: float, lat: float) -> tuple[float, float]:
    return tuple(b.evaluate(f"mtq.pixel({lon}, {lat})"))


def test_link_click_example_and_error(server, tmp_path):
    with Chromium(width=1280, height=800) as b:
        b.navigate(f"{server.url}?{urlencode(QUERY)}")
        b.wait_for(f"{DONE} && mtq.mapLoaded", timeout=90)
        ids = b.evaluate(IDS_JS)
        assert ids == api_ids(server, **QUERY)
        assert b.evaluate("document.getElementById('notice').hidden")  # the map is there
        assert b.errors() == []
        # every row shows its image chip, served by /api/chip
        srcs = b.evaluate("[...document.querySelectorAll('#results tbody img.chip')]"
                          ".map((i) => i.getAttribute('src'))")
        assert srcs == [f"/api/chip?unique_id={i}" for i in ids]
        b.wait_for("[...document.querySelectorAll('#results tbody img.chip')]"
                   ".every((i) => i.complete && i.naturalWidth === 128)", timeout=30)

        rows = b.evaluate("mtq.state.rows.map((f) => f.properties)")
        target = rows[-1]
        count = b.evaluate("mtq.queries")
        b.click(*pixel(b, target["centre_lon"], target["centre_lat"]))
        b.wait_for(f"mtq.queries > {count} && {DONE}", timeout=30)
        query = b.evaluate("mtq.state.query")
        assert abs(query["lat"] - target["centre_lat"]) < 0.005
        assert b.evaluate(IDS_JS) == api_ids(server, lat=query["lat"], lon=query["lon"], k=5)
        assert "lat=" in b.evaluate("location.search")

        # the similarity heat map of the query over the view, toggled in the panel
        b.evaluate("document.getElementById('heat-toggle').click()")
        b.wait_for(f"mtq.heats >= 1 && {HEAT_DRAWN}", timeout=60)
        assert b.evaluate("mtq.map.getLayoutProperty('heat', 'visibility')") == "visible"
        assert b.evaluate("document.getElementById('heat-what').textContent") == "similarity"
        shot(b, tmp_path, "web_similarity_heat")
        b.evaluate("document.getElementById('heat-toggle').click()")
        b.wait_for("mtq.map.getLayoutProperty('heat', 'visibility') === 'none'", timeout=10)

        other = rows[0]
        count = b.evaluate("mtq.queries")
        b.click(*pixel(b, other["centre_lon"], other["centre_lat"]), modifiers=8)
        b.wait_for(f"mtq.queries > {count} && {DONE}", timeout=30)
        assert b.evaluate("mtq.state.query")["ids"] == other["unique_id"]
        assert b.evaluate(IDS_JS) == api_ids(server, ids=other["unique_id"], k=5)
        shot(b, tmp_path, "web_knn")

        b.navigate(f"{server.url}?lat=99&lon=0&k=5")
        b.wait_for("document.body && document.body.dataset.status === 'error'")
        msg = b.evaluate("document.getElementById('message').textContent")
        assert "lat must be a latitude" in msg and "\n" not in msg
        shot(b, tmp_path, "web_error")
    _check_screenshot(tmp_path / "web_knn.png")


def _examples(server) -> tuple[list[dict], list[dict]]:
    """Three fragments like the query (positives) and three unlike it (negatives) in the
    Virginia cell, from the library's own score."""
    from mtquery.find.api import score

    rows = score(server.session, bbox=VIRGINIA, **{k: QUERY[k] for k in ("lat", "lon")}
                 ).to_pylist()
    return rows[1:4], rows[-3:]


def test_label_loop(server, tmp_path):
    """(b): 3 positive + 3 negative clicks, find more, heat map, detections with chips,
    accept / reject keys, export (a download), reload."""
    pos, neg = _examples(server)
    downloads = tmp_path / "downloads"
    with Chromium(width=1280, height=800) as b:
        b.allow_downloads(downloads)
        b.navigate(f"{server.url}?{urlencode(QUERY)}")
        b.wait_for(f"{DONE} && mtq.mapLoaded", timeout=90)
        b.evaluate("mtq.map.fitBounds([[-75.70, 37.60], [-75.50, 37.76]], {duration: 0}) && 0")
        b.wait_for("mtq.map.loaded()", timeout=30)
        b.evaluate("document.getElementById('mode-label').click()")
        for n, (row, alt) in enumerate([(r, 0) for r in pos] + [(r, 1) for r in neg], 1):
            b.click(*pixel(b, row["centre_lon"], row["centre_lat"]), modifiers=alt)
            b.wait_for(f"mtq.state.labels.size === {n}", timeout=30)
        labels = b.evaluate("mtq.state.labels.geojson().features.map((f) => "
                            "[f.properties.unique_id, f.properties.label])")
        assert sorted(labels) == sorted([[r["unique_id"], 1] for r in pos]
                                        + [[r["unique_id"], 0] for r in neg])
        shot(b, tmp_path, "web_labels")

        b.evaluate("document.getElementById('find-more').click()")
        b.wait_for(f"mtq.finds === 1 && {DONE}", timeout=180)
        assert b.evaluate("mtq.map.getLayoutProperty('heat', 'visibility')") == "visible"
        assert b.evaluate("mtq.state.heat.image").startswith("data:image/png;base64,")
        b.wait_for(HEAT_DRAWN, timeout=30)  # the map has the raster, not just the layer
        assert not b.evaluate("document.getElementById('heat-legend').hidden")
        det = b.evaluate(IDS_JS)
        assert det and b.evaluate("mtq.state.kind") == "detections"
        b.wait_for("(() => { const i = document.querySelector('#results tbody tr img.chip'); "
                   "return i && i.complete && i.naturalWidth === 128; })()", timeout=30)
        shot(b, tmp_path, "web_find_more")

        b.evaluate("document.getElementById('labels-export').click()")
        exported = _wait_file(downloads / "labels.geojson")
        doc = json.loads(exported.read_text())
        assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 6
        assert sorted((f["properties"]["unique_id"], f["properties"]["label"])
                      for f in doc["features"]) == sorted(map(tuple, labels))
        assert all(f["geometry"]["type"] == "Polygon" for f in doc["features"])

        b.reload()
        b.wait_for("window.mtq && mtq.ready && mtq.state.labels", timeout=60)
        assert b.evaluate("mtq.state.labels.size") == 6
        b.wait_for(f"{DONE} && mtq.mapLoaded", timeout=90)
        shot(b, tmp_path, "web_reloaded")

        # find more again; a accepts the selected detection, r rejects the next one
        b.evaluate("mtq.map.fitBounds([[-75.70, 37.60], [-75.50, 37.76]], {duration: 0}) && 0")
        b.wait_for("mtq.map.loaded()", timeout=30)
        b.evaluate("document.getElementById('find-more').click()")
        b.wait_for(f"mtq.finds === 1 && {DONE}", timeout=180)
        det = b.evaluate(IDS_JS)
        fresh = [u for u in det if u not in dict(labels)]
        assert len(fresh) >= 2
        b.evaluate(f"document.querySelector('#results tr[data-id=\"{fresh[0]}\"]').click()")
        after = det[det.index(fresh[0]) + 1]
        b.key("a")
        b.wait_for(f"mtq.state.highlight === {json.dumps(after)}", timeout=10)
        b.key("r")
        assert b.evaluate(f"mtq.state.labels.get({json.dumps(fresh[0])}).properties.label") == 1
        assert b.evaluate(f"mtq.state.labels.get({json.dumps(after)}).properties.label") == 0
        assert b.evaluate("mtq.state.labels.size") == 6 + 1 + (after not in dict(labels))
        assert b.evaluate("document.querySelector('#results tr.accepted').dataset.id") == fresh[0]
        shot(b, tmp_path, "web_accept_reject")
        assert b.errors() == []
    # the exported file is what classify reads
    from mtquery.find.api import classify

    res = classify("demo", labels=str(exported), bbox=VIRGINIA)  # (the server's session
    assert res.table.num_rows == 25  # reads nothing but the dataset)


def _wait_file(path: Path, timeout: float = 20) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size:
            return path
        time.sleep(0.1)
    raise AssertionError(f"no download at {path}")


def _check_screenshot(path: Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(path)
    assert img.shape[:2] == (800, 1280)
    colours = np.unique((img[:, :, :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50  # the map drew (WebGL), not a blank page
