from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import synth  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _private_vector_cache(tmp_path_factory):
    """Keep the vector cache of test datasets out of the user's ~/.cache."""
    import os

    os.environ["MTQUERY_CACHE"] = str(tmp_path_factory.mktemp("mtquery-cache"))


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
