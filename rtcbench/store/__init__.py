"""The results store: one embedded DuckDB file with runs, cells, rollouts and per-inference delays.

See `rtcbench.store.schema` for the tables and views, `rtcbench.store.migrations` for versions,
`rtcbench.store.db` for writes (one short transaction per finished cell) and read-only connections,
`rtcbench.store.compare` for the regression gate. Reports and the study page read the store from above it
(`rtcbench.report`, `rtcbench.study`); the store imports neither.
"""

from rtcbench.store.db import (
    DEFAULT_DB,
    ENV_DB,
    CellExistsError,
    Store,
    StoreLockedError,
    read_only,
    resolve_db_path,
)
from rtcbench.store.migrations import SchemaVersionError
from rtcbench.store.schema import SCHEMA_VERSION

__all__ = [
    "DEFAULT_DB",
    "ENV_DB",
    "SCHEMA_VERSION",
    "CellExistsError",
    "SchemaVersionError",
    "Store",
    "StoreLockedError",
    "read_only",
    "resolve_db_path",
]
