"""The API server's store: one interface (base.py), two engines (sqlite.py embedded, etcd.py for
etcd v3), and `open_store` choosing between them."""

from __future__ import annotations

from pathlib import Path

from netlab.control.apiserver.store.base import (Conflict, Event, Exists, Gone, NotFound, Store, StoreError, TooLarge,
                                                 key)
from netlab.control.apiserver.store.etcd import EtcdStore
from netlab.control.apiserver.store.sqlite import SQLiteStore

__all__ = ["Conflict", "EtcdStore", "Event", "Exists", "Gone", "NotFound", "SQLiteStore", "Store", "StoreError",
           "TooLarge", "key", "open_store"]


def open_store(url: str, state_dir: str | Path) -> Store:
    """`sqlite` (the embedded default, in the state directory) or `etcd://HOST:PORT`."""
    if url.startswith("etcd://"):
        return EtcdStore(url)
    return SQLiteStore(Path(state_dir) / "store.db")
