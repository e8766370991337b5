"""The Kubernetes REST API on aiohttp: discovery, CRUD with selectors, patch, watch, Tables,
subresources (status, scale, binding, log, finalize) and Status errors, for the kinds in
resources.py, over the store in store.py."""

from __future__ import annotations

import asyncio
import base64
import copy
import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any

from aiohttp import web

from netlab.api.resources import GROUPS, RESOURCES, Resource, discovery_list, field_value, lookup, parse_selector, storage_key
from netlab.control.apiserver import nodes, openapi, patch, registry, schema, tables
from netlab.control.apiserver.store import Conflict, Exists, Gone, NotFound, Store
from netlab.kit import clock

log = logging.getLogger("netlab.apiserver")

VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0+netlab", "gitCommit": "netlab",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.0", "compiler": "gc",
           "platform": "linux/amd64"}
MAX_BODY = 3 * 1024 * 1024  # upstream's request size limit
PUBLIC = {"/version", "/healthz", "/livez", "/readyz"}
BOOKMARK_EVERY = 30.0
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class APIError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure" if code >= 300 else "Success",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def not_found(r: Resource, name: str) -> APIError:
    return APIError(404, "NotFound", f'{qualified(r)} "{name}" not found', {"name": name, "group": r.group,
                                                                          "kind": r.plural})


def qualified(r: Resource) -> str:
    return f"{r.plural}.{r.group}" if r.group else r.plural


def invalid(r: Resource, name: str, errors) -> APIError:
    causes = [{"reason": e.reason, "message": e.message, "field": e.field} for e in errors]
    msg = f'{r.kind}{"." + r.group if r.group else ""} "{name}" is invalid: ' + ", ".join(
        f"{e.field}: {e.message}" for e in errors) if len(errors) == 1 else (
        f'{r.kind}{"." + r.group if r.group else ""} "{name}" is invalid: [' + ", ".join(
            f"{e.field}: {e.message}" for e in errors) + "]")
    return APIError(422, "Invalid", msg, {"name": name, "group": r.group, "kind": r.kind, "causes": causes})


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


class APIServer:
    def __init__(self, store: Store, *, service_subnet: str, advertise_address: str, token: str,
                 state_dir: str | Path, secure_port: int = 6443):
        self.store, self.token = store, token
        self.kubelets = nodes.Kubelets(Path(state_dir))
        self.advertise, self.secure_port = advertise_address, secure_port
        self.allocator = registry.Allocator(service_subnet, lambda: self.store.list("/registry/services/")[0])
        self.service_subnet = service_subnet
        self.app = web.Application(middlewares=[self.middleware], client_max_size=MAX_BODY)
        self.app.router.add_route("*", "/{tail:.*}", self.dispatch)
        self.app.on_startup.append(self._start_background)
        self.app.on_cleanup.append(self._stop_background)
        self._tasks: list[asyncio.Task] = []

    # --- plumbing --------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        try:
            if request.path not in PUBLIC:
                auth = request.headers.get("Authorization", "")
                if not (auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), self.token)):
                    raise APIError(401, "Unauthorized", "Unauthorized")
            return await handler(request)
        except APIError as e:
            return web.json_response(status_body(e.code, e.reason, e.message, e.details), status=e.code)
        except web.HTTPRequestEntityTooLarge:
            return web.json_response(status_body(413, "RequestEntityTooLarge",
                                                 "the server has received a request that is too large"), status=413)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # noqa: BLE001 - a client always gets a Status
            log.exception("internal error on %s %s", request.method, request.path)
            return web.json_response(status_body(500, "InternalError", f"an error on the server: {e}"), status=500)

    async def _start_background(self, app) -> None:
        self.bootstrap()
        self._tasks.append(asyncio.create_task(self._compact_loop()))

    async def _stop_background(self, app) -> None:
        for t in self._tasks:
            t.cancel()

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                self.store.compact()
            except Exception:  # noqa: BLE001
                log.exception("compaction failed")

    def key(self, r: Resource, namespace: str | None, name: str = "") -> str:
        base = f"/registry/{storage_key(r)}/"
        if r.namespaced and namespace:
            base += f"{namespace}/"
        return base + name

    def bootstrap(self) -> None:
        """The namespaces every cluster has, and the `kubernetes` Service with its endpoints
        pointing at this server (upstream's endpoint reconciler)."""
        ns_r = lookup("", "v1", "namespaces")
        for ns in SYSTEM_NAMESPACES:
            if self.store.get(self.key(ns_r, None, ns)) is None:
                obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                registry.prepare_create(ns_r, obj, None)
                self._create_quiet(ns_r, obj)
        svc_r = lookup("", "v1", "services")
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"type": "ClusterIP", "clusterIP": str(self.allocator.subnet[1]),
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": self.secure_port}]}}
        if self.store.get(self.key(svc_r, "default", "kubernetes")) is None:
            registry.prepare_create(svc_r, svc, "default")
            self.allocator.allocate(svc)
            self._create_quiet(svc_r, svc)
        ep_r = lookup("", "v1", "endpoints")
        ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "labels": {
            "endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": self.advertise}],
                         "ports": [{"name": "https", "port": self.secure_port, "protocol": "TCP"}]}]}
        eps_r = lookup("discovery.k8s.io", "v1", "endpointslices")
        eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": [self.advertise], "conditions": {"ready": True}}],
               "ports": [{"name": "https", "port": self.secure_port, "protocol": "TCP"}]}
        for r, obj in ((ep_r, ep), (eps_r, eps)):
            cur = self.store.get(self.key(r, "default", "kubernetes"))
            if cur is None:
                registry.prepare_create(r, obj, "default")
                self._create_quiet(r, obj)
            elif cur.get("subsets", cur.get("endpoints")) != obj.get("subsets", obj.get("endpoints")):
                cur.update({k: v for k, v in obj.items() if k in ("subsets", "endpoints", "ports")})
                self.store.update(self.key(r, "default", "kubernetes"), cur)

    def _create_quiet(self, r: Resource, obj: dict) -> None:
        try:
            self.store.create(self.key(r, obj["metadata"].get("namespace"), obj["metadata"]["name"]), obj)
        except Exists:
            pass

    async def body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            raise APIError(400, "BadRequest", "the request body is empty")
        try:
            return json.loads(raw)
        except RecursionError:
            raise APIError(400, "BadRequest", "the request body is nested too deeply") from None
        except ValueError as e:
            if request.content_type in ("application/yaml", "application/apply-patch+yaml"):
                raise APIError(415, "UnsupportedMediaType", "YAML bodies are not supported: send JSON "
                               "(server-side apply is not served; use client-side `kubectl apply`)") from None
            raise APIError(400, "BadRequest", f"the request body is not valid JSON: {e}") from None

    # --- dispatch --------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return web.json_response(VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/api":
            return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.advertise}:{self.secure_port}"}]})
        if path == "/apis":
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1",
                                      "groups": [self._group(g) for g in GROUPS]})
        if path == "/openapi/v3":
            return web.json_response(openapi.root())
        if parts[:2] == ["openapi", "v3"]:
            doc = openapi.documents().get("/".join(parts[2:]))
            if doc is None:
                raise APIError(404, "NotFound", f"no OpenAPI document for {'/'.join(parts[2:])}")
            return web.json_response(doc)
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 2:
            if len(parts) == 2:
                if parts[1] not in GROUPS:
                    raise APIError(404, "NotFound", "the server could not find the requested resource")
                return web.json_response(self._group(parts[1]) | {"kind": "APIGroup", "apiVersion": "v1"})
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            if not any(r.group == group and r.version == version for r in RESOURCES):
                raise APIError(404, "NotFound", "the server could not find the requested resource")
            return web.json_response(discovery_list(group, version))
        return await self.resource_request(request, group, version, rest)

    def _group(self, g: str) -> dict:
        versions = [{"groupVersion": f"{g}/{v}", "version": v} for v in GROUPS[g]]
        return {"name": g, "versions": versions, "preferredVersion": versions[0]}

    async def resource_request(self, request: web.Request, group: str, version: str, rest: list[str]):
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        r = lookup(group, version, rest[0])
        if r is None or (namespace is not None and not r.namespaced):
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (sub and sub not in r.subresources):
            raise APIError(404, "NotFound", "the server could not find the requested resource")
        m = request.method
        if r.plural == "bindings":
            if m != "POST" or name:
                raise APIError(405, "MethodNotAllowed", "the server does not allow this method on bindings")
            return await self.bind(request, namespace, None)
        if name is None:
            if m == "GET":
                if request.query.get("watch") in ("1", "true", "True"):
                    return await self.watch(request, r, namespace)
                return await self.list(request, r, namespace)
            if m == "POST":
                return await self.create(request, r, namespace)
            if m == "DELETE":
                return await self.delete_collection(request, r, namespace)
        elif sub is None:
            if m == "GET":
                return self.respond(request, r, self.get(r, namespace, name))
            if m == "PUT":
                return await self.update(request, r, namespace, name)
            if m == "PATCH":
                return await self.patch(request, r, namespace, name)
            if m == "DELETE":
                return await self.delete(request, r, namespace, name)
        elif sub == "scale":
            return await self.scale(request, r, namespace, name)
        elif sub == "binding" and m == "POST":
            return await self.bind(request, namespace, name)
        elif sub == "log" and m == "GET":
            return await self.pod_log(request, namespace, name)
        elif sub == "exec" and m in ("GET", "POST"):
            return await self.pod_exec(request, namespace, name)
        elif sub in ("status", "finalize"):
            if m == "GET":
                return self.respond(request, r, self.get(r, namespace, name))
            if m == "PUT":
                return await self.update(request, r, namespace, name, sub)
            if m == "PATCH":
                return await self.patch(request, r, namespace, name, sub)
        raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def respond(self, request: web.Request, r: Resource, obj: dict, status: int = 200) -> web.Response:
        if wants_table(request) and request.method == "GET":
            return web.json_response(tables.table(r.kind, [obj], obj["metadata"].get("resourceVersion", ""),
                                                  request.query.get("includeObject", "Metadata")))
        return web.json_response(obj, status=status)

    # --- reads -----------------------------------------------------------------------------

    def get(self, r: Resource, namespace: str | None, name: str) -> dict:
        obj = self.store.get(self.key(r, namespace, name))
        if obj is None:
            raise not_found(r, name)
        return self._as_version(r, obj)

    def _as_version(self, r: Resource, obj: dict) -> dict:
        # core/v1 and events.k8s.io/v1 Events share storage; present each as asked
        if r.kind == "Event" and obj.get("apiVersion") != r.group_version:
            obj = convert_event(obj, r.group_version)
        return obj

    def _matcher(self, request: web.Request):
        try:
            labels = parse_selector(request.query.get("labelSelector", ""))
            fields = parse_selector(request.query.get("fieldSelector", ""), field_selector=True)
        except ValueError as e:
            raise APIError(400, "BadRequest", str(e)) from None

        def match(obj: dict) -> bool:
            obj_labels = obj.get("metadata", {}).get("labels") or {}
            return labels.matches(obj_labels.get) and fields.matches(lambda k: field_value(obj, k))
        return match

    async def list(self, request: web.Request, r: Resource, namespace: str | None) -> web.Response:
        items, rev = self.store.list(self.key(r, namespace))
        match = self._matcher(request)
        items = [self._as_version(r, o) for o in items if match(o)]
        meta: dict[str, Any] = {"resourceVersion": str(rev)}
        limit = int(request.query.get("limit", "0") or 0)
        start = 0
        if request.query.get("continue"):
            try:
                start = int(json.loads(base64.b64decode(request.query["continue"]))["start"])
            except (ValueError, KeyError, TypeError):
                raise APIError(400, "BadRequest", "invalid continue token") from None
        if limit and start + limit < len(items):
            meta["continue"] = base64.b64encode(json.dumps({"start": start + limit}).encode()).decode()
            meta["remainingItemCount"] = len(items) - start - limit
            items = items[start:start + limit]
        elif start:
            items = items[start:]
        if wants_table(request):
            return web.json_response(tables.table(r.kind, items, str(rev), request.query.get("includeObject", "Metadata")))
        return web.json_response({"kind": f"{r.kind}List", "apiVersion": r.group_version, "metadata": meta,
                                  "items": items})

    async def watch(self, request: web.Request, r: Resource, namespace: str | None) -> web.StreamResponse:
        match = self._matcher(request)
        rv = request.query.get("resourceVersion", "")
        timeout = float(request.query.get("timeoutSeconds", "0") or 0) or None
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true", "True")
        table = wants_table(request)
        prefix = self.key(r, namespace)
        if rv not in ("", "0") and not rv.isdigit():
            raise APIError(400, "BadRequest", f"invalid resourceVersion {rv!r}")
        resp = web.StreamResponse(headers={"Content-Type": "application/json", "Cache-Control": "no-cache"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        first = [True]

        async def send(kind: str, obj: dict) -> None:
            if table and kind != "ERROR":
                if kind == "BOOKMARK":
                    obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"],
                           "columnDefinitions": [], "rows": []}
                else:
                    obj = tables.table(r.kind, [obj], obj["metadata"].get("resourceVersion", ""),
                                       request.query.get("includeObject", "Metadata"), headers=first[0])
                    first[0] = False
            await resp.write(json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n")

        if rv in ("", "0"):  # the current objects first, as ADDED
            current, since = self.store.list(prefix)
            for o in current:
                if match(o):
                    await send("ADDED", self._as_version(r, o))
        else:
            since = int(rv)
        try:
            stream = self.store.watch(prefix, since).__aiter__()
            end = asyncio.get_running_loop().time() + timeout if timeout else None
            last_rev = since
            while True:
                wait = BOOKMARK_EVERY if end is None else min(BOOKMARK_EVERY, end - asyncio.get_running_loop().time())
                if wait <= 0:
                    break
                try:
                    ev = await asyncio.wait_for(stream.__anext__(), wait)
                except asyncio.TimeoutError:
                    if bookmarks:
                        await send("BOOKMARK", {"kind": r.kind, "apiVersion": r.group_version,
                                                "metadata": {"resourceVersion": str(max(last_rev, self.store.revision()))}})
                    continue
                except StopAsyncIteration:
                    break
                last_rev = ev.rev
                if namespace is None and r.namespaced is False and ev.key.count("/") > 3:
                    continue
                # a change into the selection is ADDED for this watch, one out of it DELETED, as
                # upstream's filtered watch has it (a deleted object: as it was)
                now = match(ev.obj)
                if ev.type == "DELETED":
                    kind = "DELETED" if now else None
                else:
                    was = ev.prev is not None and match(ev.prev)
                    kind = ("MODIFIED" if was else "ADDED") if now else "DELETED" if was else None
                if kind:
                    await send(kind, self._as_version(r, ev.obj))
        except Gone:
            await send("ERROR", status_body(410, "Expired", f"too old resource version: {rv} "
                                            f"({self.store.revision()})"))
        except (ConnectionResetError, asyncio.CancelledError):
            return resp
        except Exception:  # noqa: BLE001 - the stream has started: end it; the client relists
            log.exception("watch on %s failed", prefix)
        return resp

    # --- writes ----------------------------------------------------------------------------

    def _decode(self, request: web.Request, r: Resource, obj: Any, expect_kind: str | None = None) -> dict:
        kind = expect_kind or r.kind
        if not isinstance(obj, dict):
            raise APIError(400, "BadRequest", f"the body of the request was not a {kind} object")
        if obj.get("apiVersion") and obj.get("kind") and (obj["apiVersion"], obj["kind"]) != (
                r.group_version if expect_kind is None else obj["apiVersion"], kind):
            raise APIError(400, "BadRequest", f"the API version in the data ({obj['apiVersion']}) does not match the "
                           f"expected API version ({r.group_version})" if obj["kind"] == kind else
                           f"the kind in the data ({obj['kind']}) does not match the expected kind ({kind})")
        obj.setdefault("apiVersion", r.group_version)
        obj.setdefault("kind", kind)
        strict = request.query.get("fieldValidation", "Warn") == "Strict"
        problems = schema.check(r.model, obj, strict)
        if problems:
            type_errors = [p for p in problems if not p.startswith("unknown field")]
            unknown = [p for p in problems if p.startswith("unknown field")]
            if type_errors:
                raise APIError(400, "BadRequest", f"{kind} in version \"{r.version}\" cannot be handled as a {kind}: "
                               f"{type_errors[0]}")
            if unknown:
                raise APIError(400, "BadRequest", f"{kind} in version \"{r.version}\" cannot be handled as a {kind}: "
                               f"strict decoding error: {', '.join(unknown)}")
        return obj

    def _check_namespace(self, r: Resource, namespace: str | None) -> None:
        if not r.namespaced:
            return
        ns_r = lookup("", "v1", "namespaces")
        ns = self.store.get(self.key(ns_r, None, namespace))
        if ns is None:
            raise APIError(404, "NotFound", f'namespaces "{namespace}" not found',
                           {"name": namespace, "kind": "namespaces"})
        if ns["metadata"].get("deletionTimestamp") and r.kind != "Event":
            raise APIError(403, "Forbidden", f"{r.plural} is forbidden: unable to create new content in namespace "
                           f"{namespace} because it is being terminated")

    async def create(self, request: web.Request, r: Resource, namespace: str | None) -> web.Response:
        obj = self._decode(request, r, await self.body(request))
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise APIError(400, "BadRequest", "metadata must be an object")
        if r.namespaced:
            if meta.get("namespace") and namespace and meta["namespace"] != namespace:
                raise APIError(400, "BadRequest", "the namespace of the provided object does not match the "
                               "namespace sent on the request")
            namespace = namespace or meta.get("namespace")
            if not namespace:
                raise APIError(400, "BadRequest", "a namespace must be specified")
        if not meta.get("name") and not meta.get("generateName"):
            raise invalid(r, "", [registry.v.required("metadata.name")])
        self._check_namespace(r, namespace)
        registry.prepare_create(r, obj, namespace)
        try:
            registry.validate(r, obj)
            if r.kind == "Service":
                self.allocator.allocate(obj)
        except registry.Invalid as e:
            raise invalid(r, meta.get("name", ""), e.errors) from None
        if request.query.get("dryRun") == "All":
            return web.json_response(obj, status=201)
        try:
            out = self.store.create(self.key(r, namespace, meta["name"]), obj)
        except Exists:
            raise APIError(409, "AlreadyExists", f'{qualified(r)} "{meta["name"]}" already exists',
                           {"name": meta["name"], "group": r.group, "kind": r.plural}) from None
        return web.json_response(self._as_version(r, out), status=201)

    def _store_update(self, r: Resource, namespace: str | None, name: str, new: dict, old: dict,
                      sub: str | None, check_rv: bool) -> dict:
        rv = (new.get("metadata") or {}).get("resourceVersion")
        cur_rv = old["metadata"]["resourceVersion"]
        if check_rv and rv and rv != cur_rv:
            raise self._conflict(r, name)
        if sub == "finalize":
            out = copy.deepcopy(old)
            out.setdefault("spec", {})["finalizers"] = (new.get("spec") or {}).get("finalizers") or []
        else:
            out = registry.prepare_update(r, new, old, sub)
        try:
            registry.validate(r, out, old)
            if r.kind == "Service" and sub is None:
                self.allocator.allocate(out, old)
        except registry.Invalid as e:
            raise invalid(r, name, e.errors) from None
        out.setdefault("metadata", {})["resourceVersion"] = cur_rv
        if out == old:
            return old  # a no-op: no write, no new resourceVersion, no watch event (as upstream)
        key = self.key(r, namespace, name)
        if out["metadata"].get("deletionTimestamp") and not out["metadata"].get("finalizers") and \
                not (out.get("spec") or {}).get("finalizers" if r.kind == "Namespace" else "-") and \
                (r.kind != "Pod" or not out.get("spec", {}).get("nodeName")):
            try:
                return self.store.delete(key, int(cur_rv))
            except Conflict:
                raise self._conflict(r, name) from None
        try:
            return self.store.update(key, out, int(cur_rv))
        except Conflict:
            raise self._conflict(r, name) from None
        except NotFound:
            raise not_found(r, name) from None

    def _conflict(self, r: Resource, name: str) -> APIError:
        return APIError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(r)} "{name}": the object has '
                        "been modified; please apply your changes to the latest version and try again",
                        {"name": name, "group": r.group, "kind": r.plural})

    async def update(self, request: web.Request, r: Resource, namespace: str | None, name: str,
                     sub: str | None = None) -> web.Response:
        new = self._decode(request, r, await self.body(request))
        if (new.get("metadata") or {}).get("name", name) != name:
            raise APIError(400, "BadRequest", f"the name of the object ({new['metadata']['name']}) does not match "
                           f"the name on the URL ({name})")
        old = self.get(r, namespace, name)
        out = self._store_update(r, namespace, name, new, old, sub, check_rv=True)
        return web.json_response(self._as_version(r, out))

    async def patch(self, request: web.Request, r: Resource, namespace: str | None, name: str,
                    sub: str | None = None) -> web.Response:
        body = await self.body(request)
        ct = request.headers.get("Content-Type", "")
        for _ in range(5):  # retried on conflicts with other writers, as upstream's GuaranteedUpdate
            old = self.get(r, namespace, name)
            try:
                new = patch.apply(ct, copy.deepcopy(old), body)
            except patch.PatchError as e:
                if "unsupported patch type" in str(e):
                    raise APIError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                                   f"accepted media types include: {patch.JSON_PATCH}, {patch.MERGE_PATCH}, "
                                   f"{patch.STRATEGIC}") from None
                raise APIError(422 if "test" in str(e) else 400, "BadRequest", str(e)) from None
            new = self._decode(request, r, new)
            explicit_rv = isinstance(body, dict) and (body.get("metadata") or {}).get("resourceVersion")
            if not explicit_rv:
                new.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
            try:
                out = self._store_update(r, namespace, name, new, old, sub, check_rv=True)
                return web.json_response(self._as_version(r, out))
            except APIError as e:
                if e.reason != "Conflict" or explicit_rv:
                    raise
        raise self._conflict(r, name)

    def _delete_options(self, request: web.Request, body: Any) -> tuple[int | None, str | None]:
        grace = request.query.get("gracePeriodSeconds")
        policy = request.query.get("propagationPolicy")
        if isinstance(body, dict):
            if body.get("gracePeriodSeconds") is not None:
                grace = body["gracePeriodSeconds"]
            policy = body.get("propagationPolicy") or policy
            if body.get("orphanDependents") is True:
                policy = "Orphan"
        if policy and policy not in ("Orphan", "Background", "Foreground"):
            raise APIError(422, "Invalid", f"propagationPolicy: Unsupported value: \"{policy}\": supported values: "
                           '"Background", "Foreground", "Orphan"')
        return (int(grace) if grace is not None else None), policy

    async def delete(self, request: web.Request, r: Resource, namespace: str | None, name: str,
                     body: Any = None) -> web.Response:
        if body is None:
            raw = await request.read()
            body = json.loads(raw) if raw.strip() else None
        grace, policy = self._delete_options(request, body)
        return web.json_response(self._as_version(r, self.delete_object(r, namespace, name, grace, policy)))

    def delete_object(self, r: Resource, namespace: str | None, name: str, grace: int | None,
                      policy: str | None) -> dict:
        key = self.key(r, namespace, name)
        obj = self.get(r, namespace, name)
        meta = obj["metadata"]
        rev = int(meta["resourceVersion"])
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        elif policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        stamp = clock.now()
        if r.kind == "Pod" and (obj.get("spec") or {}).get("nodeName"):
            # Graceful: the kubelet stops the pod and then deletes it with grace 0.
            if grace is None:
                grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            current = meta.get("deletionGracePeriodSeconds")
            if grace > 0 and (current is None or grace < current):
                meta["deletionTimestamp"] = clock.now(grace)
                meta["deletionGracePeriodSeconds"] = grace
                return self._update_raw(r, key, obj, rev, name)
            if grace > 0 or finalizers:
                if finalizers and not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = stamp
                return obj
        if r.kind == "Namespace":
            if name in SYSTEM_NAMESPACES:
                raise APIError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted')
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = stamp
                obj.setdefault("status", {})["phase"] = "Terminating"
                meta["finalizers"] = finalizers or None
                if meta["finalizers"] is None:
                    meta.pop("finalizers")
                return self._update_raw(r, key, obj, rev, name)
            return obj
        if finalizers:
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = stamp
                meta["deletionGracePeriodSeconds"] = 0
            meta["finalizers"] = finalizers
            return self._update_raw(r, key, obj, rev, name)
        try:
            return self.store.delete(key, rev)
        except NotFound:
            raise not_found(r, name) from None
        except Conflict:
            return self.delete_object(r, namespace, name, grace, policy)

    def _update_raw(self, r: Resource, key: str, obj: dict, rev: int, name: str) -> dict:
        try:
            return self.store.update(key, obj, rev)
        except Conflict:
            raise self._conflict(r, name) from None

    async def delete_collection(self, request: web.Request, r: Resource, namespace: str | None) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw.strip() else None
        grace, policy = self._delete_options(request, body)
        items, rev = self.store.list(self.key(r, namespace))
        match = self._matcher(request)
        out = []
        for o in items:
            if match(o):
                try:
                    out.append(self.delete_object(r, o["metadata"].get("namespace"), o["metadata"]["name"], grace,
                                                  policy))
                except APIError as e:
                    if e.code != 404:
                        raise
        return web.json_response({"kind": f"{r.kind}List", "apiVersion": r.group_version,
                                  "metadata": {"resourceVersion": str(self.store.revision())}, "items": out})

    # --- subresources ----------------------------------------------------------------------

    async def scale(self, request: web.Request, r: Resource, namespace: str | None, name: str) -> web.Response:
        obj = self.get(r, namespace, name)

        def as_scale(o: dict) -> dict:
            sel = (o.get("spec") or {}).get("selector") or {}
            return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {k: o["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                               "creationTimestamp") if k in o["metadata"]},
                    "spec": {"replicas": (o.get("spec") or {}).get("replicas", 1)},
                    "status": {"replicas": (o.get("status") or {}).get("replicas", 0),
                               "selector": ",".join(f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items())}}
        if request.method == "GET":
            return web.json_response(as_scale(obj))
        body = await self.body(request)
        if request.method == "PATCH":
            try:
                new_scale = patch.apply(request.headers.get("Content-Type", ""), as_scale(obj), body)
            except patch.PatchError as e:
                raise APIError(400, "BadRequest", str(e)) from None
        elif request.method == "PUT":
            new_scale = body
        else:
            raise APIError(405, "MethodNotAllowed", "the server does not allow this method on scale")
        replicas = (new_scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid(r, name, [registry.v.invalid("spec.replicas", replicas, "must be greater than or equal to 0")])
        rv = (new_scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != obj["metadata"]["resourceVersion"]:
            raise self._conflict(r, name)
        new = copy.deepcopy(obj)
        new["spec"]["replicas"] = replicas
        out = self._store_update(r, namespace, name, new, obj, None, check_rv=False)
        return web.json_response(as_scale(out))

    async def bind(self, request: web.Request, namespace: str | None, name: str | None) -> web.Response:
        body = await self.body(request)
        name = name or (body.get("metadata") or {}).get("name")
        node = (body.get("target") or {}).get("name")
        pods = lookup("", "v1", "pods")
        if not node:
            raise invalid(pods, name or "", [registry.v.required("target.name")])
        pod = self.get(pods, namespace, name)
        if (pod.get("spec") or {}).get("nodeName"):
            raise APIError(409, "Conflict", f"Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is "
                           f"already assigned to node \"{pod['spec']['nodeName']}\"")
        if pod["metadata"].get("deletionTimestamp"):
            raise APIError(409, "Conflict", f"pod {name} is being deleted, cannot be assigned to a host")
        pod["spec"]["nodeName"] = node
        conds = [c for c in (pod.setdefault("status", {}).get("conditions") or []) if c.get("type") != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                      "lastTransitionTime": clock.now()})
        pod["status"]["conditions"] = conds
        self._update_raw(pods, self.key(pods, namespace, name), pod, int(pod["metadata"]["resourceVersion"]), name)
        return web.json_response(status_body(201, "", "") | {"status": "Success"}, status=201)

    async def pod_log(self, request: web.Request, namespace: str | None, name: str) -> web.StreamResponse:
        pods = lookup("", "v1", "pods")
        pod = self.get(pods, namespace, name)
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        init = [c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise APIError(400, "BadRequest", f"a container name must be specified for pod {name}, choose one of: "
                               f"[{' '.join(containers)}]" + (f" or one of the init containers: [{' '.join(init)}]"
                                                              if init else ""))
            container = containers[0]
        elif container not in containers + init:
            raise APIError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        uid = pod["metadata"]["uid"]

        def same_pod() -> bool:
            cur = self.store.get(self.key(pods, namespace, name))
            return cur is not None and cur["metadata"]["uid"] == uid
        try:
            return await self.kubelets.logs(request, pod, container, same_pod)
        except nodes.NodeError as e:
            raise APIError(400, "BadRequest", str(e)) from None

    async def pod_exec(self, request: web.Request, namespace: str | None, name: str) -> web.StreamResponse:
        pod = self.get(lookup("", "v1", "pods"), namespace, name)
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container") or containers[0]
        if container not in containers:
            raise APIError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        if not request.query.getall("command", []):
            raise APIError(400, "BadRequest", "you must specify at least 1 command")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise APIError(400, "BadRequest", "netlab serves exec over WebSocket only (kubectl 1.30 and later, or "
                           "the kubernetes Python client's stream())")
        try:
            return await self.kubelets.exec(request, pod, container)
        except nodes.NodeError as e:
            raise APIError(400, "BadRequest", str(e)) from None


def convert_event(obj: dict, to: str) -> dict:
    """core/v1 Event <-> events.k8s.io/v1 Event (the fields both carry)."""
    o = copy.deepcopy(obj)
    if to == "v1":
        o["apiVersion"] = "v1"
        o.setdefault("involvedObject", o.pop("regarding", {}))
        o.setdefault("message", o.pop("note", ""))
        o.setdefault("source", {"component": o.pop("reportingController", "")})
    else:
        o["apiVersion"] = "events.k8s.io/v1"
        o.setdefault("regarding", o.pop("involvedObject", {}))
        o.setdefault("note", o.pop("message", ""))
        o.setdefault("reportingController", (o.pop("source", {}) or {}).get("component", ""))
    return o


def make_app(server: APIServer) -> web.Application:
    return server.app


def load_token(path: str | os.PathLike) -> str:
    return Path(path).read_text().strip()
