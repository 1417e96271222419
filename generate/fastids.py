"""``unique_id`` (docs/standard.md, "Output schema", same formula as
:mod:`mtquery.standard.ids`) with a
fast exact replacement of ``str(numpy_vector)``.

numpy's ``str()`` of a 768-d float32 vector costs ~10-20 ms (two Dragon4 passes plus Python
line wrapping); this module formats each value once and pads/wraps with string operations,
reproducing numpy's default print options (precision 8, ``floatmode='maxprec'``, linewidth 75,
threshold 1000). Cases it does not reproduce (non-finite values,
summarised vectors longer than 1000, non-float32/64) fall back to numpy's own ``str()``.
Equality with numpy is tested on random vectors of many scales and sizes.
"""

from __future__ import annotations

import hashlib

import numpy as np
import shapely

from mtquery.standard.ids import NUMPY_PRINT_DEFAULTS

try:  # the C function numpy's own printing calls; format_float_positional wraps it slowly
    from numpy._core.multiarray import dragon4_positional as _d4
    from numpy._core.multiarray import dragon4_scientific as _d4s

    def _fmt(x, precision, unique, fractional, trim):
        return _d4(x, precision=precision, unique=unique, fractional=fractional, trim=trim,
                   sign=False)

    def _fmt_sci(x, precision, unique, trim, **kw):
        return _d4s(x, precision=precision, unique=unique, trim=trim, sign=False, **kw)
except ImportError:  # pragma: no cover - other numpy layouts
    _fmt = np.format_float_positional
    _fmt_sci = np.format_float_scientific


def vector_str(vec: np.ndarray) -> str:
    """Exactly ``str(vec)`` under numpy's default print options, for a 1-D float vector."""
    v = np.asarray(vec)
    if v.ndim != 1 or v.dtype not in (np.float32, np.float64) or v.size == 0 or v.size > 1000:
        return _numpy_str(v)
    if not np.isfinite(v).all():
        return _numpy_str(v)
    nz = np.abs(v[v != 0])
    exp_format = False
    if nz.size:
        mx, mn = float(nz.max()), float(nz.min())
        cutoff = 10.0 ** min(8, np.finfo(v.dtype).precision)
        exp_format = mx >= cutoff or mn < 1e-4 or mx / mn > 1000.0
    if exp_format:  # numpy: scientific, mantissas zero-padded to the longest, exps aligned
        strs = [_fmt_sci(x, precision=8, unique=True, trim=".") for x in v]
        mant, exps = zip(*(s.split("e") for s in strs))
        parts = [m.split(".") for m in mant]
        exp_size = max(len(e) for e in exps) - 1
        pad_left = max(len(p[0]) for p in parts)
        prec = max(len(p[1]) for p in parts)
        # second pass as numpy's FloatingFormat.__call__ (digits past the shortest are exact)
        words = [_fmt_sci(x, precision=prec, unique=True, trim="k", min_digits=prec,
                          pad_left=pad_left, exp_digits=exp_size) for x in v]
    else:
        strs = [_fmt(x, precision=8, unique=True, fractional=True, trim=".") for x in v]
        parts = [s.split(".") for s in strs]
        pad_left = max(len(p[0]) for p in parts)
        pad_right = max(len(p[1]) for p in parts)
        words = [p[0].rjust(pad_left) + "." + p[1].ljust(pad_right) for p in parts]
    # numpy's _formatArray / _extendLine for one axis: width 75 - len(']'), hanging indent ' '
    width = 74
    lines, line = [], " "
    for i, w in enumerate(words):
        if len(line) + len(w) > width and len(line) > 1:
            lines.append(line.rstrip())
            line = " "
        line += w
        if i < len(words) - 1:
            line += " "
    lines.append(line)
    return "[" + "\n".join(lines)[1:] + "]"


def _numpy_str(v: np.ndarray) -> str:
    with np.printoptions(**NUMPY_PRINT_DEFAULTS):
        return str(v)


def fast_unique_ids(geometries, timestamps, product_ids, embeddings: np.ndarray) -> list[str]:
    """Same values as :func:`mtquery.standard.ids.unique_ids`, faster for vectors of <= 1000
    values."""
    wkts = shapely.to_wkt(np.asarray(geometries, dtype=object), rounding_precision=-1,
                          trim=True) if len(geometries) else []
    out = []
    for wkt, ts, pid, vec in zip(wkts, timestamps, product_ids, embeddings, strict=True):
        text = f"{wkt}_{ts}_{pid}_{vector_str(vec)}"
        out.append(hashlib.sha256(text.encode()).hexdigest())
    return out
