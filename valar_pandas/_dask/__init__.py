"""``ddf.valar`` on Dask DataFrames, and the summary of a run over partitions.

Importable only when Dask is installed (``pip install "valar-pandas[dask]"``); the pandas
path never imports it. Modules: :mod:`.accessor` (the accessor, lazy ``run``/``score``,
``requests``, ``estimate``), :mod:`.partition` (what runs on each partition), :mod:`.worker`
(one client per worker process, the settings that travel), :mod:`.shared` (the budget and
the totals the partitions share), :mod:`.summary` (the totals added up).
"""

from .accessor import DaskValarAccessor
from .summary import summary

__all__ = ["DaskValarAccessor", "summary"]
