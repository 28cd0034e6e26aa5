"""valar_pandas: run a language model over every row of a pandas DataFrame.

Importing the package registers the ``df.valar`` accessor::

    import valar_pandas
    out = df.valar.run("Summarise: {text}", model="zai-org/GLM-5.1-FP8", into="summary")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._accessor import ValarAccessor
from ._core.check import CheckResult, CheckRow
from ._core.config import ValarClient
from ._core.endpoint import DEFAULT_BASE_URL
from ._core.errors import (
    APIError,
    AuthenticationError,
    BatchFallbackWarning,
    BatchUnavailable,
    BudgetWarning,
    ConfigError,
    EndpointError,
    RowErrors,
    StoreError,
    StoreWarning,
    ValarError,
)
from ._core.estimate import Estimate
from ._core.handler import HttpRequest, HttpResponse
from ._core.prices import PRICES, PRICES_AS_OF, Price
from ._run.job import Job
from ._service.check import check
from ._store import RunStore, default_store_path

try:
    __version__ = version("valar-pandas")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_BASE_URL",
    "PRICES",
    "PRICES_AS_OF",
    "APIError",
    "AuthenticationError",
    "BatchFallbackWarning",
    "BatchUnavailable",
    "BudgetWarning",
    "CheckResult",
    "CheckRow",
    "ConfigError",
    "EndpointError",
    "Estimate",
    "HttpRequest",
    "HttpResponse",
    "Job",
    "Price",
    "RowErrors",
    "RunStore",
    "StoreError",
    "StoreWarning",
    "ValarAccessor",
    "ValarClient",
    "ValarError",
    "__version__",
    "check",
    "default_store_path",
]
