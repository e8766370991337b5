"""The Kubernetes REST API over HTTP (aiohttp): authentication, routing of the paths to the object
operations (objects.py), discovery and OpenAPI, content negotiation (server-side Tables), watch
streams, pods' log, exec, attach and port-forward through their nodes (streaming.py), the proxy
subresources (proxy.py), and every error as a Status."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from netlab.api.resources import Resource, lookup
from netlab.control.apiserver import (codec, discovery, eviction, fieldmanager, nodes, openapi, protobuf, proxy,
                                      streaming)
from netlab.control.apiserver.auth import admission, attributes, escalation, podsecurity, policy, reviews
from netlab.control.apiserver.auth.audit import AuditLog
from netlab.control.apiserver.auth.authn import Authenticator
from netlab.control.apiserver.auth.authz import Authorizer, forbidden
from netlab.control.apiserver.auth.impersonation import impersonate
from netlab.control.apiserver.auth.tokens import Signer
from netlab.control.apiserver.bootstrap import bootstrap
from netlab.control.apiserver.crdcontroller import CRDController
from netlab.control.apiserver.errors import APIError, bad_request, no_route, status_body
from netlab.control.apiserver.objects import ListOptions, Objects
from netlab.control.apiserver.store import Store

log = logging.getLogger("netlab.apiserver")

MAX_BODY = 3 * 1024 * 1024  # upstream's request size limit
IMPERSONATE = ("impersonate-user", "impersonate-group", "impersonate-uid")
REVIEW_GROUPS = ("authentication.k8s.io", "authorization.k8s.io")
BOOKMARK_EVERY = 30.0


def go_json(obj: Any) -> bytes:
    """JSON as upstream's encoder writes it: compact, UTF-8, with <, >, & and the line separators
    escaped (characters that appear only inside strings), and a newline at the end."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text.encode() + b"\n"


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=go_json(obj), status=status, content_type="application/json")


def query_int(request: web.Request, name: str) -> int:
    """An integer query parameter (0 when absent); anything else is a 400, in strconv's words."""
    text = request.query.get(name, "")
    if not text:
        return 0
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise bad_request(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    return int(text)


def wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def status_response(e: APIError) -> web.Response:
    resp = json_response(status_body(e.code, e.reason, e.message, e.details), status=e.code)
    if (e.details or {}).get("retryAfterSeconds"):  # a client may wait and retry, as client-go does
        resp.headers["Retry-After"] = str(e.details["retryAfterSeconds"])
    return resp


class APIServer:
    def __init__(self, store: Store, *, service_subnet: str, advertise_address: str, token: str,
                 state_dir: str | Path, secure_port: int = 6443, audit_log: Path | None = None):
        self.store, self.token = store, token
        self.objects = Objects(store, service_subnet)
        self.signer = Signer(Path(state_dir) / "pki")
        self.authn = Authenticator(self.objects, self.signer, token)
        self.authorizer = Authorizer(self.objects)
        self.objects.kinds.listeners.append(self._kind_changed)
        self.audit = AuditLog(audit_log)
        self.openapi = openapi.Documents()
        self.kubelets = nodes.Kubelets(Path(state_dir), self._node)
        self.advertise, self.secure_port = advertise_address, secure_port
        self.service_subnet = service_subnet
        self.app = web.Application(middlewares=[self.middleware], client_max_size=MAX_BODY)
        self.app.router.add_route("*", "/{tail:.*}", self.dispatch)
        self.app.on_startup.append(self._start_background)
        self.app.on_cleanup.append(self._stop_background)
        self._tasks: list[asyncio.Task] = []

    def _node(self, name: str) -> dict:
        """A Node as this server stores it, for the seam to its kubelet."""
        return self.objects.get(lookup("", "v1", "nodes"), None, name)

    # --- plumbing --------------------------------------------------------------------------

    def _kind_changed(self, r: Resource) -> None:
        if r.group == policy.GROUP:
            self.authorizer.rbac.invalidate()

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        received = self.audit.received()
        user = original = a = None
        code, decision, reason = 500, "", ""
        try:
            peercert = request.transport.get_extra_info("peercert") if request.transport else None
            user = original = self.authn.authenticate(request.headers.get("Authorization", ""), peercert)
            if any(h in request.headers for h in ("Impersonate-User", "Impersonate-Group", "Impersonate-Uid")):
                user = impersonate(request.headers, user, self.authorizer)
            a = attributes.of_request(user, request.method, request.path, request.query)
            allowed, reason = self.authorizer.decide(a)
            decision = "allow" if allowed else "forbid"
            if not allowed:
                raise forbidden(a, reason)
            request["user"] = user
            resp = await handler(request)
            code = resp.status
            return resp
        except APIError as e:
            code = e.code
            return status_response(e)
        except web.HTTPRequestEntityTooLarge:
            code = 413
            return status_response(APIError(413, "RequestEntityTooLarge",
                                            "the server has received a request that is too large"))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as e:  # noqa: BLE001 - a client always gets a Status
            log.exception("internal error on %s %s", request.method, request.path)
            return status_response(APIError(500, "InternalError", f"an error on the server: {e}"))
        finally:
            if original is not None:
                self.audit.event(received, request.path_qs, a, original.info(),
                                 user.info() if user is not original else None, request.remote or "",
                                 request.headers.get("User-Agent", ""), code, decision, reason)

    async def _start_background(self, app) -> None:
        self.bootstrap()
        self._tasks.append(asyncio.create_task(self._compact_loop()))
        self._tasks.append(asyncio.create_task(CRDController(self.objects).run()))

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

    def bootstrap(self) -> None:
        bootstrap(self.objects, self.service_subnet, self.advertise, self.secure_port)
        policy.ensure(self.objects)
        self.authorizer.rbac.invalidate()

    async def body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            raise bad_request("the request body is empty")
        if request.content_type == protobuf.MEDIA_TYPE:  # kubectl 1.32+'s typed clients
            try:
                return protobuf.decode(raw)
            except (protobuf.ProtobufError, UnicodeDecodeError, ValueError) as e:
                raise APIError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                               f"accepted media types include: application/json, application/yaml, "
                               f"application/vnd.kubernetes.protobuf ({e})") from None
        try:
            return codec.loads(raw)
        except RecursionError:
            raise bad_request("the request body is nested too deeply") from None
        except ValueError as e:
            if request.content_type in ("application/yaml", "application/apply-patch+yaml"):
                return codec.loads_yaml(raw)
            raise bad_request(f"the request body is not valid JSON: {e}") from None

    # --- routing ---------------------------------------------------------------------------

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return json_response(discovery.VERSION)
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/api":
            return json_response(discovery.api_versions(f"{self.advertise}:{self.secure_port}"))
        served = self.objects.kinds.served()
        if path == "/apis":
            return json_response(discovery.group_list(served))
        if path == "/openapi/v2":
            return self.openapi.v2_response(request.headers.get("Accept", ""), self.objects.kinds.custom)
        if path == "/openapi/v3":
            return json_response(self.openapi_documents()[1])
        if parts[:2] == ["openapi", "v3"]:
            doc = self.openapi_documents()[0].get("/".join(parts[2:]))
            if doc is None:
                raise APIError(404, "NotFound", f"no OpenAPI document for {'/'.join(parts[2:])}")
            return json_response(doc)
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 2:
            if len(parts) == 2:
                if parts[1] not in discovery.groups(served):
                    raise no_route()
                return json_response(discovery.group(parts[1], served) | {"kind": "APIGroup", "apiVersion": "v1"})
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise no_route()
        if not rest:
            if not discovery.serves(group, version, served):
                raise no_route()
            return json_response(discovery.resource_list(group, version, served))
        return await self.resource_request(request, group, version, rest)

    def openapi_documents(self) -> tuple[dict, dict]:
        custom = self.objects.kinds.custom
        return self.openapi.get(custom.strategies(), custom.generation)

    async def resource_request(self, request: web.Request, group: str, version: str, rest: list[str]):
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        r = self.objects.lookup(group, version, rest[0])
        if r is None or (namespace is not None and not r.namespaced):
            raise no_route()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub == "proxy" and "proxy" in r.subresources:  # the rest of the path is the proxied one
            return await proxy.serve(request, self.objects, self.kubelets, r.plural, namespace, name, rest[3:])
        if len(rest) > 3 or (sub and sub not in r.subresources):
            raise no_route()
        m = request.method
        if r.group in REVIEW_GROUPS:
            if m != "POST" or name:
                raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            out = reviews.review(self, r, namespace, await self.body(request), request["user"])
            return json_response(out, status=201)
        if (r.plural, sub) == ("serviceaccounts", "token"):
            if m != "POST":
                raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            body = await self.body(request)
            admission.token_request(self.objects, request["user"], namespace or "", name, body)
            return json_response(reviews.token_request(self, namespace or "", name, body), status=201)
        if (r.group, r.plural) == ("", "bindings"):
            if m != "POST" or name:
                raise APIError(405, "MethodNotAllowed", "the server does not allow this method on bindings")
            return await self.bind(request, namespace, None)
        if name is None:
            if m == "GET":
                if request.query.get("watch") in ("1", "true", "True"):
                    return await self.watch(request, r, namespace)
                return self.list(request, r, namespace)
            if m == "POST":
                return await self.create(request, r, namespace)
            if m == "DELETE":
                return await self.delete_collection(request, r, namespace)
        elif sub is None:
            if m == "GET":
                return self.respond(request, r, self.objects.get(r, namespace, name))
            if m == "PUT":
                return await self.update(request, r, namespace, name)
            if m == "PATCH":
                return await self.patch(request, r, namespace, name)
            if m == "DELETE":
                return await self.delete(request, r, namespace, name)
        elif sub == "scale":
            return await self.scale(request, r, namespace, name)
        elif sub == "eviction" and m == "POST":
            out = eviction.evict(self.objects, namespace or "", name, await self.body(request),
                                 dry_run=request.query.get("dryRun") == "All")
            return json_response(out, status=out["code"])
        elif sub == "binding" and m == "POST":
            return await self.bind(request, namespace, name)
        elif sub == "log" and m == "GET":
            return await self.pod_log(request, namespace, name)
        elif sub in ("exec", "attach", "portforward") and m in ("GET", "POST"):
            return await self.pod_stream(request, namespace, name, sub)
        elif sub in ("status", "finalize"):
            if m == "GET":
                return self.respond(request, r, self.objects.get(r, namespace, name))
            if m == "PUT":
                return await self.update(request, r, namespace, name, sub)
            if m == "PATCH":
                return await self.patch(request, r, namespace, name, sub)
        raise APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def respond(self, request: web.Request, r: Resource, obj: dict, status: int = 200) -> web.Response:
        if wants_table(request) and request.method == "GET":
            return json_response(self.objects.table(r, [obj], obj["metadata"].get("resourceVersion", ""),
                                                        request.query.get("includeObject", "Metadata")))
        return json_response(obj, status=status)

    # --- query options ---------------------------------------------------------------------

    @staticmethod
    def list_options(request: web.Request) -> ListOptions:
        q = request.query
        return ListOptions(label_selector=q.get("labelSelector", ""), field_selector=q.get("fieldSelector", ""),
                           limit=query_int(request, "limit"), continue_=q.get("continue", ""),
                           resource_version=q.get("resourceVersion", ""))

    @staticmethod
    def strict(request: web.Request) -> bool:
        return request.query.get("fieldValidation", "Warn") == "Strict"

    @staticmethod
    def warned(request: web.Request, write, status: int = 200, extra: list[str] = ()) -> web.Response:
        """The response of a write, with a Warning header for each unknown field it dropped
        (fieldValidation=Warn, the default), as upstream's."""
        warn = request.query.get("fieldValidation", "Warn") == "Warn"
        token = codec.WARNINGS.set([] if warn else None)
        fm = request.query.get("fieldManager", "")
        req = fieldmanager.Request(fieldmanager.manager_of(fm, request.headers.get("User-Agent", "")),
                                   request.query.get("force") == "true", fm, dry_run=request.query.get("dryRun") == "All")
        manager = fieldmanager.REQUEST.set(req)
        try:
            out = write()
            warnings = [*extra, *(codec.WARNINGS.get() or [])]  # admission's (PodSecurity's) whatever the validation
        finally:
            codec.WARNINGS.reset(token)
            fieldmanager.REQUEST.reset(manager)
        status = 201 if req.created else status
        resp = json_response(out, status=status)
        for w in warnings:
            resp.headers.add("Warning", '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
        return resp

    @staticmethod
    def delete_options(request: web.Request, body: Any) -> tuple[int | None, str | None]:
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

    async def optional_body(self, request: web.Request) -> Any:
        raw = await request.read()
        return codec.loads(raw) if raw.strip() else None

    # --- reads -----------------------------------------------------------------------------

    def list(self, request: web.Request, r: Resource, namespace: str | None) -> web.Response:
        out = self.objects.list(r, namespace, self.list_options(request))
        if wants_table(request):
            return json_response(self.objects.table(r, out["items"], out["metadata"]["resourceVersion"],
                                                        request.query.get("includeObject", "Metadata")))
        return json_response(out)

    async def watch(self, request: web.Request, r: Resource, namespace: str | None) -> web.StreamResponse:
        stream = self.objects.watch(r, namespace, self.list_options(request))
        timeout = query_int(request, "timeoutSeconds") or None
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true", "True")
        table = wants_table(request)
        include = request.query.get("includeObject", "Metadata")
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
                    obj = self.objects.table(r, [obj], obj["metadata"].get("resourceVersion", ""), include,
                                             headers=first[0])
                    first[0] = False
            await resp.write(go_json({"type": kind, "object": obj}))

        # The changes come through a queue, so that waiting for the next one with a timeout (for a
        # bookmark, or the end of the watch) does not cancel the stream itself.
        changes: asyncio.Queue = asyncio.Queue()

        async def pump() -> None:
            try:
                async for change in stream:
                    changes.put_nowait(change)
            except Exception as e:  # noqa: BLE001 - handed to the writer below
                changes.put_nowait(e)
            changes.put_nowait(None)

        task = asyncio.create_task(pump())
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout if timeout else None
        try:
            while True:
                wait = BOOKMARK_EVERY if end is None else min(BOOKMARK_EVERY, end - loop.time())
                if wait <= 0:
                    break
                try:
                    change = await asyncio.wait_for(changes.get(), wait)
                except asyncio.TimeoutError:
                    if bookmarks:
                        await send("BOOKMARK", {"kind": r.kind, "apiVersion": r.group_version,
                                                "metadata": {"resourceVersion": str(self.objects.revision())}})
                    continue
                if change is None:
                    break
                if isinstance(change, APIError):
                    await send("ERROR", status_body(change.code, change.reason, change.message, change.details))
                    break
                if isinstance(change, Exception):
                    log.error("watch on %s failed: %r", r.plural, change)  # the stream has started: end it
                    break
                await send(*change)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            task.cancel()
        return resp

    # --- writes ----------------------------------------------------------------------------

    async def create(self, request: web.Request, r: Resource, namespace: str | None) -> web.Response:
        body = await self.body(request)
        warnings: list[str] = []
        self.no_escalation(request, r, namespace, None, body)
        if (r.group, r.plural) in (("", "pods"), ("", "nodes"), ("coordination.k8s.io", "leases")):
            admission.node_write(self.objects, request["user"], r, namespace, None, None, body)
        if (r.group, r.plural) == ("", "pods") and isinstance(body, dict):
            ns = namespace or (body.get("metadata") or {}).get("namespace") or ""
            refusal, warnings = podsecurity.check(self.store.get(self.objects.key(self.objects.namespaces, None, ns)),
                                                  body)
            if refusal:
                raise APIError(403, "Forbidden", refusal, {"name": (body.get("metadata") or {}).get("name", ""),
                                                           "kind": "pods"})

        return self.warned(request, lambda: self.objects.create(r, namespace, body, self.strict(request),
                                                                dry_run=request.query.get("dryRun") == "All"), 201,
                           warnings)

    def no_escalation(self, request: web.Request, r: Resource, namespace: str | None, name: str | None,
                      body) -> None:
        """RBAC's writes grant only what the writer holds (escalation.py)."""
        if r.group != policy.GROUP or not isinstance(body, dict):
            return
        name = name or (body.get("metadata") or {}).get("name", "")
        if r.plural in ("roles", "clusterroles") and "rules" in body:
            escalation.check_role(self.authorizer, request["user"], r.plural, namespace or "", name, body["rules"])
        elif r.plural in ("rolebindings", "clusterrolebindings") and body.get("roleRef"):
            escalation.check_binding(self.authorizer, request["user"], r.plural, namespace or "", name,
                                     body["roleRef"])

    def node_restriction(self, request: web.Request, r: Resource, namespace: str | None, name: str,
                         sub: str | None, body) -> None:
        self.no_escalation(request, r, namespace, name, body)
        user = request["user"]
        if user.node is None or (r.group, r.plural) not in (("", "pods"), ("", "nodes"),
                                                            ("coordination.k8s.io", "leases")):
            return
        old = self.store.get(self.objects.key(r, namespace, name)) if r.plural == "nodes" else None
        admission.node_write(self.objects, user, r, namespace, name, sub, body, request.headers.get("Content-Type", ""),
                             ((old or {}).get("metadata") or {}).get("labels"))

    async def update(self, request: web.Request, r: Resource, namespace: str | None, name: str,
                     sub: str | None = None) -> web.Response:
        body = await self.body(request)
        self.node_restriction(request, r, namespace, name, sub, body)
        return self.warned(request, lambda: self.objects.update(r, namespace, name, body, sub, self.strict(request)))

    async def patch(self, request: web.Request, r: Resource, namespace: str | None, name: str,
                    sub: str | None = None) -> web.Response:
        body = await self.body(request)
        self.node_restriction(request, r, namespace, name, sub, body)
        ct = request.headers.get("Content-Type", "")
        return self.warned(request, lambda: self.objects.patch(r, namespace, name, ct, body, sub,
                                                               self.strict(request)))

    async def delete(self, request: web.Request, r: Resource, namespace: str | None, name: str) -> web.Response:
        self.node_restriction(request, r, namespace, name, None, None)
        grace, policy = self.delete_options(request, await self.optional_body(request))
        return json_response(self.objects.delete(r, namespace, name, grace, policy))

    async def delete_collection(self, request: web.Request, r: Resource, namespace: str | None) -> web.Response:
        grace, policy = self.delete_options(request, await self.optional_body(request))
        return json_response(self.objects.delete_collection(r, namespace, self.list_options(request), grace,
                                                                policy))

    # --- subresources ----------------------------------------------------------------------

    async def scale(self, request: web.Request, r: Resource, namespace: str | None, name: str) -> web.Response:
        if request.method == "GET":
            return json_response(self.objects.scale(r, namespace, name))
        self.objects.get(r, namespace, name)  # 404 before reading the body
        body = await self.body(request)
        if request.method == "PATCH":
            ct = request.headers.get("Content-Type", "")
        elif request.method == "PUT":
            ct = None
        else:
            raise APIError(405, "MethodNotAllowed", "the server does not allow this method on scale")
        return self.warned(request, lambda: self.objects.update_scale(r, namespace, name, ct, body))

    async def bind(self, request: web.Request, namespace: str | None, name: str | None) -> web.Response:
        self.objects.bind(namespace, name, await self.body(request))
        return json_response(status_body(201, "", "") | {"status": "Success"}, status=201)

    async def pod_log(self, request: web.Request, namespace: str | None, name: str) -> web.StreamResponse:
        pods = lookup("", "v1", "pods")
        pod = self.objects.get(pods, namespace, name)
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        init = [c["name"] for c in (pod.get("spec") or {}).get("initContainers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                  f"[{' '.join(containers)}]" + (f" or one of the init containers: [{' '.join(init)}]"
                                                                 if init else ""))
            container = containers[0]
        elif container not in containers + init:
            raise bad_request(f"container {container} is not valid for pod {name}")
        uid = pod["metadata"]["uid"]

        def same_pod() -> bool:
            try:
                return self.objects.get(pods, namespace, name)["metadata"]["uid"] == uid
            except APIError:
                return False
        try:
            return await self.kubelets.logs(request, pod, container, same_pod)
        except nodes.NodeError as e:
            raise bad_request(str(e)) from None

    async def pod_stream(self, request: web.Request, namespace: str | None, name: str, sub: str):
        pod = self.objects.get(lookup("", "v1", "pods"), namespace, name)
        if sub == "portforward":
            return await streaming.portforward(request, self.kubelets, pod)
        return await streaming.exec_or_attach(request, self.kubelets, pod, sub)


def make_app(server: APIServer) -> web.Application:
    return server.app


def load_token(path: str | os.PathLike) -> str:
    return Path(path).read_text().strip()
