"""The API client and the informer every netlab component uses (client-go's shape, in asyncio).

    c = Client.from_kubeconfig(path)            # or Client.from_lab("netlab")
    pod = await c.get("pods", "web-1", namespace="default")
    async for ev in c.watch("pods", resource_version=rv): ...

    inf = Informer(c, "endpointslices")
    inf.add_handler(on_add=..., on_update=..., on_delete=...)
    asyncio.create_task(inf.run()); await inf.wait_synced()

Objects are plain dicts in Kubernetes JSON, never trimmed. The informer lists, then watches from
the list's resourceVersion, relists on 410 Gone or a broken stream (with backoff), keeps an
indexed cache, and calls the handlers in order. A watch event of any size the API server may send
is read (no line limit below MAX_EVENT_BYTES, far above the API's 3 MiB request limit); anything
the informer cannot read or parse breaks only that watch, never the informer: it relists with
backoff, and `healthy` says whether its cache is in step meanwhile.

Custom resources are addressed as "<group>/<version>/<plural>" (namespaced when a namespace is
given), or, after `await c.discover()`, by "<plural>.<group>" (or any name kubectl would take),
as the API server's discovery documents name them:

    await c.list("stable.example.com/v1/crontabs", namespace="default")
    await c.discover(); await c.get("crontabs.stable.example.com", "my-cron", namespace="default")
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

from netlab.api import resources as _served
from netlab.kit import clock

log = logging.getLogger("netlab.client")
MAX_EVENT_BYTES = 64 << 20  # one watch event (a line): objects are at most 3 MiB, as the API server takes them

# plural -> (group, version, namespaced), kind -> plural: what the API server serves and lists (core
# events; not bindings or the review kinds, which are only created)
_PLAIN = [r for r in _served.RESOURCES if r.group != "events.k8s.io" and "list" in r.verbs]
RESOURCES: dict[str, tuple[str, str, bool]] = {r.plural: (r.group, r.version, r.namespaced) for r in _PLAIN}
KINDS = {r.kind: r.plural for r in _PLAIN}
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"  # what kubectl get asks for


def resource_for(name: str) -> str:
    """The plural for what a user types: `pods`, `pod`, `po`, `Pod`, `deployments.apps`, `svc`."""
    base = name.split(".", 1)[0]
    for r in _PLAIN:
        if base in (r.plural, r.singular, r.kind) or base.lower() in r.short_names:
            return r.plural
    raise ValueError(f"unknown resource type {name!r}; netlab serves {', '.join(sorted(RESOURCES))}")


def type_name(resource: str) -> str:
    """`deployment.apps`, `endpoints`: a resource type as kubectl names it in its messages (a
    custom resource by its plural and group: `crontabs.stable.example.com`)."""
    r = next((x for x in _PLAIN if x.plural == resource), None)
    if r is None:
        gvr = parse_gvr(resource)
        return f"{gvr[2]}.{gvr[0]}" if gvr else resource
    return f"{r.singular}{'.' + r.group if r.group else ''}"


def manifest_objects(text: str, namespace: str | None = None) -> list[dict]:
    """The objects of a manifest: every YAML document, `List` items unpacked; with `namespace`,
    the namespaced ones that name none are put there."""
    out = []
    for doc in yaml.safe_load_all(text):
        if not doc:
            continue
        if not isinstance(doc, dict) or "kind" not in doc:
            raise ValueError("a manifest document must be an object with apiVersion and kind")
        out += doc.get("items") or [] if str(doc["kind"]).endswith("List") else [doc]
    for o in out:
        if o.get("kind") not in KINDS:
            raise ValueError(f"kind {o.get('kind')!r} is not served by netlab; it serves {', '.join(sorted(KINDS))}")
        if namespace and RESOURCES[KINDS[o["kind"]]][2]:
            o.setdefault("metadata", {}).setdefault("namespace", namespace)
    return out


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


async def apply(client: Client, obj: dict) -> str:
    """Create `obj`, or merge the fields it sets into the existing object (what `kubectl apply`
    does for a manifest's fields). Returns kubectl's line: `deployment.apps/web created`. A kind
    that is not built in (a custom resource) is looked up in the server's discovery."""
    resource = await client.resource_for_kind(obj.get("apiVersion", ""), obj["kind"])
    meta = obj.setdefault("metadata", {})
    kind_name = type_name(resource)
    if resource not in RESOURCES:
        group, _, namespaced = client.resources[resource]
        kind_name = f"{client.singulars.get(resource) or obj['kind'].lower()}.{group}"
        if namespaced:
            meta.setdefault("namespace", "default")  # as kubectl puts a custom resource without one
    try:
        await client.create(resource, obj)
        return f"{kind_name}/{meta['name']} created"
    except ApiError as e:
        if e.status != 409:
            raise
    cur = await client.get(resource, meta["name"], meta.get("namespace"))
    new = await client.patch(resource, meta["name"], obj, meta.get("namespace"), "merge")
    same = new["metadata"].get("resourceVersion") == cur["metadata"].get("resourceVersion")
    return f"{kind_name}/{meta['name']} {'unchanged' if same else 'configured'}"


PATCH_TYPES = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json",
               "json": "application/json-patch+json"}


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str, body: dict | None = None):
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message, self.body = status, reason, message, body or {}


def parse_gvr(resource: str) -> tuple[str, str, str] | None:
    """(group, version, plural) of "<group>/<version>/<plural>" (core: "v1/<plural>"), else None."""
    parts = resource.split("/")
    if len(parts) == 3 and all(parts):
        return parts[0], parts[1], parts[2]
    if len(parts) == 2 and all(parts):
        return "", parts[0], parts[1]
    return None


def path_for(resource: str, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None, known: dict[str, tuple[str, str, bool]] | None = None) -> str:
    """The URL path of a built-in resource (`pods`), one in `known` (what a client discovered),
    or one given as "<group>/<version>/<plural>" (namespaced if a namespace is given)."""
    table = known if known is not None else RESOURCES
    if resource in table:
        group, version, namespaced = table[resource]
        resource = gvr[2] if (gvr := parse_gvr(resource)) else resource.split(".", 1)[0]
    elif (gvr := parse_gvr(resource)) is not None:
        group, version, resource = gvr
        namespaced = namespace is not None
    else:
        raise ValueError(f"unknown resource {resource!r}; known: {', '.join(table)} (or give <group>/<version>/"
                         "<plural>, or discover() first)")
    p = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespaced and namespace:
        p += f"/namespaces/{quote(namespace, safe='')}"
    p += f"/{resource}"
    if name:
        p += f"/{quote(name, safe='')}"
    if subresource:
        p += f"/{subresource}"
    return p


def load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """A client certificate and key given as PEM bytes (ssl reads them only from files: a
    private temporary file, removed at once)."""
    import os
    import tempfile

    fd, path = tempfile.mkstemp(prefix="netlab-client-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cert.rstrip(b"\n") + b"\n" + key)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


class Client:
    def __init__(self, server: str, token: str | None = None, ca_file: str | None = None,
                 ca_data: bytes | None = None, cert: tuple[bytes, bytes] | None = None):
        self.server = server.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        # the resources this client can address by name: the built-ins, and what discover() finds
        self.resources: dict[str, tuple[str, str, bool]] = dict(RESOURCES)
        self.names: dict[str, str] = {}  # plural, singular, short name, kind (lower) -> key of self.resources
        self.kinds: dict[tuple[str, str], str] = {}  # (apiVersion, kind) -> key of self.resources
        self.singulars: dict[str, str] = {}  # key of self.resources -> singular name, for messages
        self.unlisted: set[str] = set()  # keys of self.resources that cannot be listed
        self.ssl: ssl.SSLContext | bool = False
        if self.server.startswith("https"):
            self.ssl = ssl.create_default_context(cafile=ca_file, cadata=ca_data.decode() if ca_data else None)
            if cert:
                load_client_cert(self.ssl, *cert)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | Path, context: str | None = None) -> Client:
        doc = yaml.safe_load(Path(path).read_text())
        ctx_name = context or doc.get("current-context")
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next((u["user"] for u in doc.get("users", []) if u["name"] == ctx.get("user")), {})
        ca_data = base64.b64decode(cluster["certificate-authority-data"]) if "certificate-authority-data" in cluster \
            else None
        cert = None
        if "client-certificate-data" in user or "client-certificate" in user:
            def read(k: str) -> bytes:
                return base64.b64decode(user[f"{k}-data"]) if f"{k}-data" in user else Path(user[k]).read_bytes()
            cert = (read("client-certificate"), read("client-key"))
        return cls(cluster["server"], user.get("token"), cluster.get("certificate-authority"), ca_data, cert)

    @classmethod
    def in_cluster(cls) -> Client:
        """From inside a pod, as client-go's rest.InClusterConfig: the `kubernetes` Service from the
        environment the kubelet sets, and the service account's token and CA."""
        import os

        sa = Path("/var/run/secrets/kubernetes.io/serviceaccount")
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise ApiError(0, "NotInCluster", "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set")
        return cls(f"https://{host}:{port}", (sa / "token").read_text().strip(), str(sa / "ca.crt"))

    @classmethod
    def from_lab(cls, lab: str, in_lab: bool = False) -> Client:
        from netlab.kit.cluster import state_dir

        return cls.from_kubeconfig(state_dir(lab) / ("kubeconfig-node" if in_lab else "kubeconfig"))

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.headers, timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=10))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: Any = None, params: dict | None = None,
                      content_type: str = "application/json", raw: bool = False, accept: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if data is not None else {}
        if accept:
            headers["Accept"] = accept
        params = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (params or {}).items()
                  if v is not None}
        async with self.session.request(method, self.server + path, data=data, params=params, headers=headers,
                                        ssl=self.ssl, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            payload = await resp.read()
            if resp.status >= 400:
                try:
                    st = json.loads(payload)
                except ValueError:
                    st = {"reason": resp.reason, "message": payload.decode(errors="replace")}
                raise ApiError(resp.status, st.get("reason", ""), st.get("message", ""), st)
            if raw:
                return payload
            return json.loads(payload) if payload else None

    def path(self, resource: str, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        return path_for(self.resources_key(resource), namespace, name, subresource, self.resources)

    def resources_key(self, name: str) -> str:
        """The key of self.resources for what a user types (as kubectl resolves it), or `name`."""
        if name in self.resources or parse_gvr(name):
            return name
        return self.names.get(name.lower(), name)

    async def discover(self) -> dict[str, tuple[str, str, bool]]:
        """Every resource the server serves now (custom ones included), from its discovery
        documents: registered as "<plural>.<group>" at the group's preferred version, and by
        plural, singular, short names and kind where that names one resource."""
        groups = (await self.request("GET", "/apis"))["groups"]
        seen: dict[str, set[str]] = {}
        for g in groups:
            for i, ver in enumerate(g["versions"]):
                lst = await self.request("GET", f"/apis/{ver['groupVersion']}")
                for r in lst["resources"]:
                    if "/" in r["name"]:
                        continue
                    k = f"{r['name']}.{g['name']}"
                    exact = f"{ver['groupVersion']}/{r['name']}"
                    if "list" not in r.get("verbs", ["list"]):
                        self.unlisted.update((k, exact))  # the review kinds: created, never listed
                    self.resources[exact] = (g["name"], ver["version"], r["namespaced"])
                    self.kinds[(ver["groupVersion"], r["kind"])] = exact
                    self.singulars[exact] = r.get("singularName") or r["kind"].lower()
                    if i:
                        continue  # the preferred (first) version names the resource
                    self.resources[k] = (g["name"], ver["version"], r["namespaced"])
                    for alias in {r["name"], r.get("singularName") or "", r["kind"].lower(), *r.get("shortNames", [])}:
                        if alias:
                            seen.setdefault(alias, set()).add(k)
        for alias, keys in seen.items():
            if len(keys) == 1 and alias not in RESOURCES:
                self.names.setdefault(alias, next(iter(keys)))
        return self.resources

    async def resource_for_kind(self, api_version: str, kind: str) -> str:
        """The resource serving objects of apiVersion and kind (discovering what the server serves
        if it is not a built-in)."""
        if kind in KINDS and RESOURCES[KINDS[kind]][:2] == _group_version(api_version):
            return KINDS[kind]
        if (api_version, kind) not in self.kinds:
            await self.discover()
        try:
            return self.kinds[(api_version, kind)]
        except KeyError:
            raise ApiError(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"') from None

    async def get(self, resource: str, name: str, namespace: str | None = None, subresource: str | None = None) -> dict:
        return await self.request("GET", self.path(resource, namespace, name, subresource))

    async def list(self, resource: str, namespace: str | None = None, label_selector: str | None = None,
                   field_selector: str | None = None) -> dict:
        return await self.request("GET", self.path(resource, namespace),
                                  params={"labelSelector": label_selector, "fieldSelector": field_selector})

    async def create(self, resource: str, obj: dict, namespace: str | None = None) -> dict:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        return await self.request("POST", self.path(resource, ns), obj)

    async def update(self, resource: str, obj: dict, subresource: str | None = None) -> dict:
        meta = obj["metadata"]
        return await self.request("PUT", self.path(resource, meta.get("namespace"), meta["name"], subresource), obj)

    async def patch(self, resource: str, name: str, patch: Any, namespace: str | None = None,
                    patch_type: str = "merge", subresource: str | None = None) -> dict:
        return await self.request("PATCH", self.path(resource, namespace, name, subresource), patch,
                                  content_type=PATCH_TYPES[patch_type])

    async def delete(self, resource: str, name: str, namespace: str | None = None,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None) -> dict | None:
        opts = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            opts["propagationPolicy"] = propagation_policy
        return await self.request("DELETE", self.path(resource, namespace, name), opts)

    async def watch(self, resource: str, namespace: str | None = None, resource_version: str | None = None,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int | None = None, allow_bookmarks: bool = True) -> AsyncIterator[dict]:
        params = {"watch": "true", "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if allow_bookmarks else None}
        params = {k: str(v) for k, v in params.items() if v is not None}
        async with self.session.get(self.server + self.path(resource, namespace), params=params, ssl=self.ssl,
                                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
            if resp.status >= 400:
                st = json.loads(await resp.read() or b"{}")
                raise ApiError(resp.status, st.get("reason", ""), st.get("message", ""), st)
            async for line in lines(resp.content, MAX_EVENT_BYTES):
                if line.strip():
                    yield json.loads(line)


class EventTooLarge(ValueError):
    pass


async def lines(content: aiohttp.StreamReader, limit: int) -> AsyncIterator[bytes]:
    """The newline-separated lines of a stream, each up to `limit` bytes. (aiohttp's own line
    iterator stops at its buffer's high-water mark, 128 KiB to 512 KiB: a ConfigMap of 600 KB is
    one longer line.)"""
    buf = bytearray()
    start = 0  # where to look for the next newline: the bytes before it hold none
    async for chunk in content.iter_any():
        buf += chunk
        while (i := buf.find(b"\n", start)) >= 0:
            yield bytes(buf[:i + 1])
            del buf[:i + 1]
            start = 0
        start = len(buf)
        if len(buf) > limit:
            raise EventTooLarge(f"a watch event longer than {limit} bytes")
    if buf:
        yield bytes(buf)


Handler = Callable[..., Any]


class Informer:
    """A cache of one resource kept in sync with the API server, with change handlers."""

    def __init__(self, client: Client, resource: str, namespace: str | None = None,
                 label_selector: str | None = None, field_selector: str | None = None):
        self.client, self.resource, self.namespace = client, resource, namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.store: dict[tuple[str | None, str], dict] = {}
        self.handlers: list[tuple[Handler | None, Handler | None, Handler | None]] = []
        self.indexers: dict[str, Callable[[dict], list[str]]] = {}
        self.indices: dict[str, dict[str, set[tuple[str | None, str]]]] = {}
        self._synced = asyncio.Event()
        self.resource_version = ""
        self.healthy = False  # the cache is in step: listed, and the watch since has not broken
        self.last_error = ""

    def add_handler(self, on_add: Handler | None = None, on_update: Handler | None = None,
                    on_delete: Handler | None = None) -> None:
        self.handlers.append((on_add, on_update, on_delete))

    def add_index(self, name: str, fn: Callable[[dict], list[str]]) -> None:
        if name in self.indexers:
            if self.indexers[name] is not fn:  # two users of one shared informer disagree
                raise ValueError(f"informer {self.resource}: index {name!r} is already defined otherwise")
            return
        self.indexers[name] = fn
        self.indices[name] = {}
        for k, o in self.store.items():
            self._index(k, o)

    def by_index(self, name: str, value: str) -> list[dict]:
        return [self.store[k] for k in self.indices[name].get(value, ()) if k in self.store]

    def get(self, namespace: str | None, name: str) -> dict | None:
        return self.store.get((namespace, name))

    def list(self) -> list[dict]:
        return list(self.store.values())

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    @staticmethod
    def key(obj: dict) -> tuple[str | None, str]:
        return obj["metadata"].get("namespace"), obj["metadata"]["name"]

    def _index(self, k: tuple, obj: dict | None, old: dict | None = None) -> None:
        for name, fn in self.indexers.items():
            idx = self.indices[name]
            if old is not None:
                for v in fn(old):
                    idx.get(v, set()).discard(k)
            if obj is not None:
                for v in fn(obj):
                    idx.setdefault(v, set()).add(k)

    async def _call(self, which: int, *args: Any) -> None:
        for h in self.handlers:
            fn = h[which]
            if fn is None:
                continue
            try:
                out = fn(*args)
                if inspect.isawaitable(out):
                    await out
            except Exception:  # noqa: BLE001 - one bad handler must not stop the informer
                log.exception("%s informer handler failed", self.resource)

    async def _apply(self, kind: str, obj: dict) -> None:
        k = self.key(obj)
        old = self.store.get(k)
        if kind == "DELETED":
            if old is not None:
                del self.store[k]
                self._index(k, None, old)
                await self._call(2, obj)
            return
        self.store[k] = obj
        self._index(k, obj, old)
        if old is None:
            await self._call(0, obj)
        else:
            await self._call(1, old, obj)

    async def relist(self) -> None:
        lst = await self.client.list(self.resource, self.namespace, self.label_selector, self.field_selector)
        fresh = {self.key(o): o for o in lst.get("items") or []}
        for k in list(self.store):
            if k not in fresh:
                await self._apply("DELETED", self.store[k])
        for o in fresh.values():
            old = self.store.get(self.key(o))
            if old is None or old["metadata"].get("resourceVersion") != o["metadata"].get("resourceVersion"):
                await self._apply("MODIFIED", o)
        self.resource_version = lst["metadata"]["resourceVersion"]
        self._synced.set()

    async def run(self) -> None:
        """List and watch until cancelled. Whatever breaks a watch (an error from the server, a
        broken or unreadable stream, an event that does not parse) leads to a relist after a
        backoff; the informer itself never stops."""
        backoff = 0.2
        need_list = True
        while True:
            try:
                if need_list:
                    await self.relist()
                    need_list = False
                    self.healthy, self.last_error = True, ""
                async for ev in self.client.watch(self.resource, self.namespace, self.resource_version,
                                                  self.label_selector, self.field_selector, timeout_seconds=300):
                    kind, obj = ev["type"], ev["object"]
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            need_list = True
                            break
                        raise ApiError(obj.get("code", 500), obj.get("reason", ""), obj.get("message", ""), obj)
                    self.resource_version = obj.get("metadata", {}).get("resourceVersion", self.resource_version)
                    if kind != "BOOKMARK":
                        await self._apply(kind, obj)
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except ApiError as e:
                if e.status != 410:
                    self._broke("failed", e)
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
                self._broke("broke", e, logging.INFO)
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)
            except Exception as e:  # noqa: BLE001 - an event it cannot read must not end the informer
                self._broke("broke", e)
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5)

    def _broke(self, how: str, e: BaseException, level: int = logging.WARNING) -> None:
        self.healthy = False
        self.last_error = f"{type(e).__name__}: {e}"
        log.log(level, "%s watch %s (%s); relisting", self.resource, how, self.last_error)


def event(obj: dict, reason: str, message: str, type_: str = "Normal", component: str = "",
          host: str = "") -> dict:
    """A core/v1 Event about `obj`, named as upstream's recorder names them."""
    import os

    meta = obj["metadata"]
    now = clock.now()
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{os.urandom(8).hex()}", "namespace": meta.get("namespace") or "default"},
        "involvedObject": {"kind": obj.get("kind", ""), "namespace": meta.get("namespace"), "name": meta["name"],
                           "uid": meta.get("uid"), "apiVersion": obj.get("apiVersion", ""),
                           "resourceVersion": meta.get("resourceVersion")},
        "reason": reason, "message": message, "type": type_, "count": 1,
        "firstTimestamp": now, "lastTimestamp": now,
        "source": {k: v for k, v in (("component", component), ("host", host)) if v},
        "reportingComponent": component, "reportingInstance": host,
    }

