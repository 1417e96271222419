"""Typed manifests: written with their schema, read back checked; another version, a missing
field, a wrong type or damage is one line saying how to make a fresh one."""

from __future__ import annotations

import json

import pytest

from mtquery.errors import DataError
from mtquery.io.manifests import EvalResults, GenerationManifest


def test_round_trip_keeps_fields_and_extra(tmp_path):
    m = GenerationManifest(model={"name": "spectral", "dim": 13}, counts={"rows": 4},
                           extra={"added_later": [1, 2]})
    path = tmp_path / "manifest.json"
    m.write(path)
    doc = json.loads(path.read_text())
    assert doc["schema"] == "mtquery-generation/1" and doc["added_later"] == [1, 2]
    back = GenerationManifest.read(path)
    assert back.model_name == "spectral" and back.counts == {"rows": 4}
    assert back.extra == {"added_later": [1, 2]}


@pytest.mark.parametrize("doc, says", [
    ({"schema": "mtquery-generation/2"}, "this mtquery reads 'mtquery-generation/1'"),
    ({"model": {}}, "no schema (an older mtquery)"),
    ({"schema": "mtquery-generation/1", "limit": "ten"}, "field 'limit' has the wrong type"),
    ({"schema": "mtquery-generation/1", "elapsed_s": True}, "field 'elapsed_s'"),
    ([1, 2], "not a manifest"),
])
def test_refused_in_one_line_with_the_way_out(tmp_path, doc, says):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError) as err:
        GenerationManifest.read(path)
    msg = str(err.value)
    assert says in msg and "rerun the same 'mtquery generate'" in msg and "\n" not in msg


def test_damaged_and_missing(tmp_path):
    path = tmp_path / "r.json"
    path.write_text('{"schema": "mtquery-eval/1", "kind": ')
    with pytest.raises(DataError, match="unreadable or truncated manifest"):
        EvalResults.read(path)
    with pytest.raises(DataError, match="no manifest"):
        EvalResults.read(tmp_path / "absent.json")


def test_eval_results_check_required_types():
    ok = EvalResults.from_dict({"schema": "mtquery-eval/1", "kind": "probe", "metrics": {}})
    assert ok.kind == "probe"
    with pytest.raises(DataError, match="field 'metrics' has the wrong type"):
        EvalResults.from_dict({"schema": "mtquery-eval/1", "metrics": [1]})


def test_index_and_store_manifests_checked():
    from mtquery.io.manifests import IndexManifest, StoreMeta

    good = {"format": "mtquery-ann/2", "kind": "ivf-rabitq", "dim": 8, "rows": 10,
            "nlist": 4, "rerank": 64, "nprobe": 2}
    m = IndexManifest.from_dict(good)
    assert m.nlist == 4 and m.to_dict()["format"] == "mtquery-ann/2"
    with pytest.raises(DataError, match="'mtquery-ann/1'.*rebuild the index"):
        IndexManifest.from_dict({**good, "format": "mtquery-ann/1"})
    with pytest.raises(DataError, match="field 'nlist' is missing; rebuild the index"):
        IndexManifest.from_dict({k: v for k, v in good.items() if k != "nlist"})
    with pytest.raises(DataError, match="field 'rows' has the wrong type"):
        IndexManifest.from_dict({**good, "rows": "10"})
    meta = {"version": 4, "dim": 8, "dtype": "float16", "fingerprint": []}
    assert StoreMeta.from_dict(meta).dtype == "float16"
    with pytest.raises(DataError, match="this mtquery reads 4"):
        StoreMeta.from_dict({**meta, "version": 3})
