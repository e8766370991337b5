"""EndpointSlices: the address type and each endpoint's addresses are required, ports default to
TCP; kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("AddressType"), tables.col("Ports"), tables.col("Endpoints"), tables.AGE]

    def defaults(self, obj: dict) -> None:
        for p in obj.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")

    def validate(self, obj: dict) -> list[v.FieldError]:
        errs = []
        if obj.get("addressType") not in ("IPv4", "IPv6", "FQDN"):
            errs.append(v.not_supported("addressType", obj.get("addressType"), ["FQDN", "IPv4", "IPv6"]))
        for i, ep in enumerate(obj.get("endpoints") or []):
            if not ep.get("addresses"):
                errs.append(v.required(f"endpoints[{i}].addresses"))
        return errs

    def row(self, e: dict) -> list[Any]:
        ports = ",".join(str(p.get("port", "")) for p in e.get("ports") or []) or "<unset>"
        addrs = [a for ep in e.get("endpoints") or [] for a in ep.get("addresses") or []]
        return [e["metadata"]["name"], e.get("addressType", ""), ports, tables.first_of(addrs) if addrs else "<unset>",
                tables.age(e["metadata"].get("creationTimestamp"))]
