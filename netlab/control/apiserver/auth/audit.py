"""The audit log: one audit.k8s.io/v1 Event a request, at the Metadata level (who, what, the
object's reference, the answer's code, the authorizer's decision; no bodies), as JSON lines in
the lab's logs/audit.log (`netlab logs audit`), as upstream's log backend writes them."""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path

from netlab.control.apiserver.auth.attributes import Attributes


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    def __init__(self, path: Path | None):
        self.file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", buffering=1)  # a line at a time: readable while the server runs

    @staticmethod
    def received() -> str:
        return _now()

    def event(self, received: str, uri: str, a: Attributes | None, user_info: dict, impersonated: dict | None,
              source: str, agent: str, code: int, decision: str = "", reason: str = "") -> None:
        if self.file is None:
            return
        ev: dict = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                    "auditID": str(uuid.uuid4()), "stage": "ResponseComplete", "requestURI": uri,
                    "verb": a.verb if a else "", "user": user_info}
        if impersonated:
            ev["impersonatedUser"] = impersonated
        ev["sourceIPs"] = [source] if source else []
        if agent:
            ev["userAgent"] = agent
        if a is not None and a.resource_request:
            ref = {"resource": a.resource}
            for k, val in (("namespace", a.namespace), ("name", a.name), ("apiGroup", a.group),
                           ("apiVersion", a.version), ("subresource", a.subresource)):
                if val:
                    ref[k] = val
            ev["objectRef"] = ref
        ev["responseStatus"] = {"metadata": {}, "code": code}
        ev["requestReceivedTimestamp"], ev["stageTimestamp"] = received, _now()
        if decision:
            ev["annotations"] = {"authorization.k8s.io/decision": decision,
                                 "authorization.k8s.io/reason": reason}
        self.file.write(json.dumps(ev, separators=(",", ":")) + "\n")
