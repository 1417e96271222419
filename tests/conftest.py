from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import synth  # noqa: E402


@pytest.fixture(scope="session")
def private_cache(tmp_path_factory) -> Path:
    """The session's vector cache folder (one per xdist worker)."""
    return tmp_path_factory.mktemp("mtquery-cache")


@pytest.fixture(autouse=True, scope="session")
def _private_vector_cache(private_cache):
    """Test datasets are cached in ``private_cache``, never in the user's ~/.cache/mtquery.

    Session-wide because module fixtures build indexes and start servers (which read
    ``$MTQUERY_CACHE`` once) before any function-scoped fixture runs; set with a MonkeyPatch,
    so the caller's environment is restored when the session ends. A test that needs another
    cache (or none) sets its own with ``monkeypatch.setenv``, undone after that test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTQUERY_CACHE", str(private_cache))
        yield private_cache


@pytest.fixture(autouse=True)
def _fresh_footers():
    """Remote footers are cached per process: each test reads (and counts) its own."""
    from mtquery.io.remote import clear_footer_cache

    clear_footer_cache()


@pytest.fixture(scope="module")
def server():
    """The map page serving the bundled demo, one per test module (the web tests'; a module
    may define its own ``server``, as test_remote's HTTP file server)."""
    from mtquery.web.server import start

    running = start("demo")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A released-layout dataset (4 parts, 24k x 64) behind a Range-capable HTTP server:
    (server, part URLs, local paths)."""
    from rangeserver import RangeServer
    from released import REPO, make_data

    root = tmp_path_factory.mktemp("mirror")
    paths = make_data.write_release(root / REPO, rows=24_000, dim=64, parts=4,
                                    row_group_size=2_000)
    with RangeServer(root) as srv:
        urls = [srv.url(f"{REPO}/embeddings/{p.name}") for p in paths]
        yield srv, urls, paths


@pytest.fixture(scope="session")
def big_table():
    return synth.make_table(n=50_000, dim=32, seed=7)


@pytest.fixture(scope="session")
def big_dataset(tmp_path_factory, big_table):
    path = tmp_path_factory.mktemp("big") / "big.parquet"
    return synth.write(big_table, path, row_group_size=10_000)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "small.parquet"
    return synth.write(synth.make_table(n=500, dim=8, seed=1), path)


@pytest.fixture(scope="module")
def faults():
    """benchmarks/faults.py as a module: tests run the fault benchmark's own trials."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "faults.py"
    spec = importlib.util.spec_from_file_location("mtquery_faults_bench", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)
