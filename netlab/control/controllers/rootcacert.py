"""The root CA certificate publisher, as upstream's: every namespace has the `kube-root-ca.crt`
ConfigMap holding the CA that signed the API server's certificate (key `ca.crt`), so that a pod
can verify the API server at kubernetes.default.svc; it is made again if deleted, and put back if
changed."""

from __future__ import annotations

from netlab.api.client import ApiError
from netlab.control.controllers.base import Controller

NAME = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")


class RootCACertPublisher(Controller):
    name = "root-ca-cert-publisher"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.root_ca = ctx.root_ca.decode()
        self.namespaces = ctx.informer("namespaces")
        self.configmaps = ctx.informer("configmaps")
        self.namespaces.add_handler(self._namespace, lambda old, new: self._namespace(new), None)
        self.configmaps.add_handler(None, lambda old, new: self._configmap(new), self._configmap)

    def _namespace(self, ns: dict) -> None:
        self.enqueue(ns["metadata"]["name"])

    def _configmap(self, cm: dict) -> None:
        if cm["metadata"]["name"] == NAME:
            self.enqueue(cm["metadata"]["namespace"])

    async def sync(self, key: str) -> None:
        if not self.root_ca or self.namespaces.get(None, key) is None:
            return  # without a CA there is nothing to publish, as upstream starts no publisher then
        data = {"ca.crt": self.root_ca}
        cm = self.configmaps.get(key, NAME)
        if cm is None:
            try:
                await self.client.create("configmaps", {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": NAME, "namespace": key, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                    "data": data})
            except ApiError as e:
                if e.status == 404 or (e.status == 403 and "being terminated" in e.message):
                    return  # no namespace to publish into
                raise
            return
        if cm.get("data") == data and (cm["metadata"].get("annotations") or {}).get(DESCRIPTION_ANNOTATION):
            return
        new = dict(cm, data=data)
        new["metadata"] = dict(cm["metadata"], annotations={**(cm["metadata"].get("annotations") or {}),
                                                            DESCRIPTION_ANNOTATION: DESCRIPTION})
        await self.client.update("configmaps", new)
