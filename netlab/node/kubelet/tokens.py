"""Service-account tokens for this node's pods, as upstream's kubelet token manager: each asked
of the API server with a TokenRequest bound to the pod (its audience and expirationSeconds, 3607
for the default mount as upstream's kube-api-access volume), kept until 80% of its life has
passed, then asked again; the pod worker rewrites the files that hold it."""

from __future__ import annotations

import asyncio
import time

from netlab.api.client import Client

DEFAULT_EXPIRATION = 3607  # upstream's kube-api-access projection
REFRESH_AT = 0.8  # of a token's life
MAX_AGE = 24 * 3600  # a token is renewed at least daily, as upstream's


class TokenManager:
    def __init__(self, client: Client):
        self.client = client
        self.loop: asyncio.AbstractEventLoop | None = None  # the kubelet's, set once it runs
        self.cache: dict[tuple[str, str | None, int], tuple[str, float]] = {}  # -> (token, refresh at)

    def source(self, pod: dict):
        """The pod's token source for the volume writers (called from worker threads)."""
        return lambda audience, expiration: self.token(pod, audience, expiration)

    def token(self, pod: dict, audience: str | None, expiration: int) -> str:
        key = (pod["metadata"]["uid"], audience, expiration)
        cached = self.cache.get(key)
        if cached and time.time() < cached[1]:
            return cached[0]
        assert self.loop is not None, "the token manager is used before the kubelet runs"
        token, refresh = asyncio.run_coroutine_threadsafe(self._request(pod, audience, expiration), self.loop) \
            .result(30)
        self.cache[key] = (token, refresh)
        return token

    async def _request(self, pod: dict, audience: str | None, expiration: int) -> tuple[str, float]:
        meta = pod["metadata"]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        spec: dict = {"expirationSeconds": expiration,
                      "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}}
        if audience:
            spec["audiences"] = [audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        out = await self.client.request("POST", self.client.path("serviceaccounts", meta["namespace"], sa, "token"),
                                        body)
        now = time.time()
        life = int((out.get("spec") or {}).get("expirationSeconds") or expiration)
        return out["status"]["token"], now + min(life * REFRESH_AT, MAX_AGE)

    def due(self, uid: str) -> bool:
        """Whether a token of the pod's is past its refresh time (its files are to be rewritten)."""
        now = time.time()
        return any(k[0] == uid and now >= refresh for k, (_, refresh) in self.cache.items())

    def forget(self, uid: str) -> None:
        for k in [k for k in self.cache if k[0] == uid]:
            del self.cache[k]
