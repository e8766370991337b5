"""Endpoints: ports default to TCP; kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Endpoints"), tables.AGE]

    def defaults(self, obj: dict) -> None:
        for s in obj.get("subsets") or []:
            for p in s.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")

    def row(self, e: dict) -> list[Any]:
        eps = []
        for s in e.get("subsets") or []:
            for a in s.get("addresses") or []:
                for p in s.get("ports") or [{}]:
                    eps.append(f"{a['ip']}:{p['port']}" if "port" in p else a["ip"])
        return [e["metadata"]["name"], tables.first_of(eps), tables.age(e["metadata"].get("creationTimestamp"))]
