"""Leases: kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Holder"), tables.AGE]

    def row(self, lease: dict) -> list[Any]:
        return [lease["metadata"]["name"], (lease.get("spec") or {}).get("holderIdentity", ""),
                tables.age(lease["metadata"].get("creationTimestamp"))]
