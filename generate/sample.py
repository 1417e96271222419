"""What every input of the generator yields: :class:`Sample`, one Core window.

A sample holds its bands at their native resolution, the upper-left origin and CRS of the
window; ``stack`` upsamples coarser bands to the finest one with nearest neighbour
(docs/standard.md, "Core windows").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Nominal resolution (metres) of each band the generator knows.
NOMINAL_RES = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
               "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
               "vv": 10, "vh": 10}
#: Side of a Core window in 10 m pixels.
CORE_PX_10M = 1068


class SampleError(Exception):
    """One sample cannot be used (corrupt bytes, missing band); the run goes on."""


@dataclass
class Sample:
    grid_cell: str
    grid_row_u: int
    grid_col_r: int
    product_id: str
    timestamp: str
    crs: str = ""
    origin: tuple[float, float] = (0.0, 0.0)  # upper-left (x, y) in crs
    pixel_size: float = 10.0  # of the finest band
    bands: dict[str, np.ndarray] = field(default_factory=dict)
    ref: str = ""  # where it came from (file#row_group)

    def stack(self, names: tuple[str, ...]) -> np.ndarray:
        """(bands, H, W) with coarser bands upsampled (nearest) to the finest one."""
        missing = [b for b in names if b not in self.bands]
        if missing:
            raise SampleError(f"missing band(s) {','.join(missing)}")
        arrs = [self.bands[b] for b in names]
        size = max(a.shape[0] for a in arrs)
        out = np.empty((len(arrs), size, size), dtype=np.float32)
        for i, a in enumerate(arrs):
            if a.shape[0] != a.shape[1]:
                raise SampleError(f"band {names[i]} is not square ({a.shape})")
            if a.shape[0] == size:
                out[i] = a
            else:
                idx = (np.arange(size) * a.shape[0]) // size
                out[i] = a[np.ix_(idx, idx)]
        return out
