"""The ServiceAccounts controller, as upstream's: every active namespace has the `default`
ServiceAccount, made again if it is deleted."""

from __future__ import annotations

from netlab.api.client import ApiError
from netlab.control.controllers.base import Controller

SERVICE_ACCOUNTS = ("default",)


class ServiceAccountsController(Controller):
    name = "serviceaccounts-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.namespaces = ctx.informer("namespaces")
        self.serviceaccounts = ctx.informer("serviceaccounts")
        self.namespaces.add_handler(self._namespace, lambda old, new: self._namespace(new), None)
        self.serviceaccounts.add_handler(None, None, lambda sa: self.enqueue(sa["metadata"]["namespace"]))

    def _namespace(self, ns: dict) -> None:
        self.enqueue(ns["metadata"]["name"])

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get(None, key)
        if ns is None or (ns.get("status") or {}).get("phase", "Active") != "Active":
            return
        for name in SERVICE_ACCOUNTS:
            if self.serviceaccounts.get(key, name) is not None:
                continue
            try:
                await self.client.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                             "metadata": {"name": name, "namespace": key}})
            except ApiError as e:
                if e.status == 409 or e.status == 404 or (e.status == 403 and "being terminated" in e.message):
                    continue  # made meanwhile, or its namespace is gone or going
                raise
