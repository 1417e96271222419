from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from mtquery.errors import DataError
from mtquery.standard.schema import arrow_schema, check_columns, embedding_matrix, embedding_type


def test_three_layouts_give_the_same_matrix():
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(m.ravel()), 4)
    lst = pa.array(list(m), pa.list_(pa.float32()))
    arr2d = pa.array([[v] for v in m], pa.list_(pa.list_(pa.float32(), 4), 1))
    for col, layout in [(fixed, "fixed"), (lst, "list"), (arr2d, "array2d")]:
        assert embedding_type(col.type).layout == layout
        assert np.array_equal(embedding_matrix(col), m)


def test_mixed_lengths_rejected():
    with pytest.raises(DataError, match="mixed embedding dimensions"):
        embedding_matrix(pa.array([[1.0, 2.0], [1.0, 2.0, 3.0]], pa.list_(pa.float32())))


def test_non_float_rejected():
    with pytest.raises(DataError):
        embedding_type(pa.list_(pa.string()))


def test_written_schema_is_standard():
    s = arrow_schema(768)
    assert s.field("embedding").type == pa.list_(pa.float32(), 768)
    assert s.field("grid_row_u").type == pa.int16()
    assert check_columns(s) == []
