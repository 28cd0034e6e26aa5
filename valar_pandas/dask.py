"""valar_pandas on Dask: ``import valar_pandas.dask`` registers ``ddf.valar``.

Needs the extra: ``pip install "valar-pandas[dask]"``. See ``docs/dask.md``::

    import dask.dataframe as dd
    import valar_pandas.dask

    out = ddf.valar.run("Review: {review}", model="zai-org/GLM-5.1-FP8")
    frame = out.compute()
    valar_pandas.dask.summary(out)
"""

from __future__ import annotations

from ._dask import DaskValarAccessor, summary

__all__ = ["DaskValarAccessor", "summary"]
