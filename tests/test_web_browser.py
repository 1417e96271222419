"""The map page in a real headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it):
a shared link runs its query on load, a click on the map runs a query, a shift-click adds an
example, an API error shows its message; the screenshot is left in out/test-artifacts/.

Not skipped when Chromium is missing: the page is only tested if a browser runs it."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest

from mtquery.web.browser import Chromium, find_chromium

ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"
IDS_JS = "[...document.querySelectorAll('#results tbody tr')].map((tr) => tr.dataset.id)"
DONE = "document.body && document.body.dataset.status === 'done'"


@pytest.fixture(scope="module")
def server():
    from mtquery.web.server import start

    running = start("demo")
    yield running
    running.stop()


def api_ids(server, **params) -> list[str]:
    url = f"{server.url}api/knn?{urlencode(params)}"
    with urllib.request.urlopen(url, timeout=60) as r:
        return [row["unique_id"] for row in json.load(r)]


def pixel(browser: Chromium, lon: float, lat: float) -> tuple[float, float]:
    return tuple(browser.evaluate(
        f"(() => {{ const p = mtq.map.project([{lon}, {lat}]); "
        "const r = mtq.map.getContainer().getBoundingClientRect(); "
        "return [p.x + r.left, p.y + r.top]; })()"))


def test_page_link_click_and_screenshot(server):
    assert find_chromium(), "chromium is not installed: apt-get install -y chromium"
    started = time.monotonic()
    with Chromium(width=1280, height=800) as b:
        b.navigate(f"{server.url}?lat=37.6803&lon=-75.548&k=5")
        b.wait_for(DONE, timeout=60)
        ids = b.evaluate(IDS_JS)
        assert len(ids) == 5 and ids == api_ids(server, lat=37.6803, lon=-75.548, k=5)
        assert b.evaluate("document.body.innerText").count("419U_667L") >= 5
        assert b.errors() == []

        # a click on a neighbour's footprint runs knn for the fragment there
        rows = b.evaluate("mtq.state.rows.map((f) => f.properties)")
        target = rows[-1]
        x, y = pixel(b, target["centre_lon"], target["centre_lat"])
        count = b.evaluate("mtq.queries")
        b.click(x, y)
        b.wait_for(f"mtq.queries > {count} && {DONE}", timeout=30)
        query = b.evaluate("mtq.state.query")
        assert abs(query["lat"] - target["centre_lat"]) < 0.005
        assert abs(query["lon"] - target["centre_lon"]) < 0.005
        clicked = b.evaluate(IDS_JS)
        assert clicked == api_ids(server, lat=query["lat"], lon=query["lon"], k=5)
        assert target["unique_id"] not in clicked  # the query fragment is left out
        assert "lat=" in b.evaluate("location.search")  # shareable link

        # shift-click: the fragment there becomes an example (ids=...)
        other = rows[0]
        x, y = pixel(b, other["centre_lon"], other["centre_lat"])
        count = b.evaluate("mtq.queries")
        b.click(x, y, modifiers=8)
        b.wait_for(f"mtq.queries > {count} && {DONE}", timeout=30)
        assert b.evaluate("mtq.state.query")["ids"] == other["unique_id"]
        assert b.evaluate(IDS_JS) == api_ids(server, ids=other["unique_id"], k=5)

        shot = b.screenshot(ARTIFACTS / "web_page.png")

        # an API error is shown as its one-line message
        b.navigate(f"{server.url}?lat=99&lon=0&k=5")
        b.wait_for("document.body && document.body.dataset.status === 'error'")
        assert "lat must be a latitude" in b.evaluate(
            "document.getElementById('message').textContent")
    assert shot.stat().st_size > 20_000
    _check_screenshot(shot)
    print(f"browser test {time.monotonic() - started:.1f} s, screenshot {shot}")


def _check_screenshot(path: Path) -> None:
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(path)
    assert img.shape[:2] == (800, 1280)
    colours = np.unique((img[:, :, :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50  # the map drew (WebGL), not a blank page
