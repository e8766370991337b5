"""One worker per pod, as the kubelet's pod workers: make the sandbox (namespace, CNI, pause),
run init containers in order then the containers, restart them per restartPolicy with
CrashLoopBackOff, probe them, report status, and on deletion stop them gracefully, tear the
sandbox down and release the API object."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from netlab.api.client import ApiError, event
from netlab.kit import cgroups, clock, net, pace
from netlab.node.kubelet import runtime, sandbox, security, volumes
from netlab.node.kubelet.cni import CNIError, port_mappings
from netlab.node.kubelet.expansion import expand_all
from netlab.node.workloads import UnknownImage, argv_for, image_name

log = logging.getLogger("netlab.kubelet")
BACKOFF_START, BACKOFF_MAX = 10.0, 300.0  # upstream's CrashLoopBackOff
MIN_GRACE = 2.0  # upstream's minimal shutdown window: a container gets its SIGTERM this long before a SIGKILL
TICK = 1.0  # a worker's resync when nothing wakes it (the kubelet's PLEG relists every second)
# the pod conditions the kubelet owns; others (readiness gates' and the like) are kept as others set them
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


class Container:
    """What the kubelet tracks for one container between syncs."""

    def __init__(self, spec: dict, init: bool, ephemeral: bool = False):
        self.spec, self.init, self.name, self.ephemeral = spec, init, spec["name"], ephemeral
        # a sidecar: an init container with restartPolicy Always, started in its turn and kept
        # running (restarted whatever its exit) beside the containers, stopped once they are done
        self.sidecar = init and spec.get("restartPolicy") == "Always"
        self.proc: runtime.Process | None = None
        self.restarts = 0
        self.started_at: str | None = None
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict = {}
        self.next_start = 0.0
        self.backoff = BACKOFF_START
        self.ready = False
        self.t0 = 0.0  # when the current run started (monotonic)
        self.startup_ok = "startupProbe" not in spec
        self.probe_state: dict[str, dict] = {}  # probe kind -> {next, successes, failures}
        self.done = False  # an init container that succeeded, or a container that will not restart
        self.env: dict[str, str] = {}  # the running process's environment, which exec gives its commands too
        self.security: dict | None = None  # its privileges (security.context), which exec gives its commands too
        self.cgroup: str | None = None  # its cgroup for this run
        self.mount_error = False  # waiting for a volume (FailedMount)

    def running(self) -> bool:
        """Started, and past its postStart hook (the state says so), and alive."""
        return "running" in self.state and self.proc is not None and self.proc.alive()

    def probe_schedule(self, kind: str) -> dict:
        """A probe's schedule and counts for the current run (the first one after initialDelaySeconds)."""
        return self.probe_state.setdefault(kind, {"next": self.t0 + self.spec[kind].get("initialDelaySeconds", 0),
                                                  "ok": 0, "fail": 0})

    def to_json(self) -> dict:
        return {"proc": self.proc.to_json() if self.proc else None, "restarts": self.restarts,
                "startedAt": self.started_at, "state": self.state, "lastState": self.last_state, "done": self.done,
                "env": self.env, "security": self.security, "cgroup": self.cgroup}

    def load(self, d: dict) -> None:
        self.restarts, self.started_at = d.get("restarts", 0), d.get("startedAt")
        self.state, self.last_state, self.done = d.get("state", self.state), d.get("lastState", {}), d.get("done", False)
        self.env = d.get("env") or {}
        self.security, self.cgroup = d.get("security"), d.get("cgroup")
        if d.get("proc"):
            self.proc = runtime.Process.from_json(d["proc"])


class PodWorker:
    def __init__(self, kubelet, pod: dict):
        self.k, self.pod = kubelet, pod
        meta = pod["metadata"]
        self.uid, self.name, self.ns = meta["uid"], meta["name"], meta["namespace"]
        self.host_network = (pod.get("spec") or {}).get("hostNetwork", False)
        self.netns = None if self.host_network else kubelet.layout.pod_netns(self.uid)
        self.where = kubelet.node_layout.pod(self.uid)  # the pod's paths on the node
        self.dir = runtime.PodDir(self.where)
        self.wake = asyncio.Event()
        self.pause: runtime.Process | None = None
        self.cni_result: dict | None = None
        self.ip: str | None = None
        self.containers = [Container(c, False, True) for c in (pod.get("spec") or {}).get("ephemeralContainers") or []] + \
                          [Container(c, True) for c in (pod.get("spec") or {}).get("initContainers") or []] + \
                          [Container(c, False) for c in (pod.get("spec") or {}).get("containers") or []]
        self.sandbox_error: str | None = None
        self.sandbox_retry = 0.0
        self.phase_override: str | None = None
        self.start_time: str | None = None
        self.last_status: dict | None = None
        self.task: asyncio.Task | None = None

    # --- state on disk, so a restarted kubelet adopts running pods --------------------------------

    def save(self) -> None:
        self.dir.save({"pause": self.pause.to_json() if self.pause else None, "cni": self.cni_result, "ip": self.ip,
                       "netns": self.netns, "startTime": self.start_time, "pod": f"{self.ns}/{self.name}",
                       "containers": {c.name: c.to_json() for c in self.containers}})

    def adopt(self) -> bool:
        st = self.dir.state()
        if not st.get("pause"):
            return False
        pause = runtime.Process.from_json(st["pause"])
        if not pause.alive() or (self.netns and not net.ns_exists(self.netns)):
            return False
        self.pause, self.cni_result, self.ip, self.start_time = pause, st.get("cni"), st.get("ip"), st.get("startTime")
        for c in self.containers:
            if c.name in st.get("containers", {}):
                c.load(st["containers"][c.name])
                if c.proc is not None and c.proc.alive() and "running" not in c.state:
                    c.state = {"running": {"startedAt": c.started_at}}  # an earlier kubelet went during its postStart
        return True

    # --- the loop --------------------------------------------------------------------------

    def update(self, pod: dict) -> None:
        old, self.pod = self.pod["metadata"], pod
        meta = pod["metadata"]
        known = {c.name for c in self.containers}
        for spec in (pod.get("spec") or {}).get("ephemeralContainers") or []:  # `kubectl debug` adds them
            if spec["name"] not in known:
                self.containers.append(Container(spec, False, True))
        if (old.get("labels"), old.get("annotations")) != (meta.get("labels"), meta.get("annotations")) and any(
                "downwardAPI" in v or "projected" in v for v in (pod.get("spec") or {}).get("volumes") or []):
            asyncio.get_running_loop().create_task(self.refresh_volumes())  # the files follow the labels
        self.wake.set()

    async def run(self) -> None:
        try:
            if self.adopt():
                log.info("pod %s/%s: adopted running sandbox", self.ns, self.name)
            while True:
                if self.pod["metadata"].get("deletionTimestamp") or self.k.gone(self.uid):
                    await self.terminate()
                    return
                self.wake.clear()  # before the sync: what happens during it wakes the next one
                await self.sync()
                for proc in self.processes():  # their exits wake the worker
                    proc.watch(asyncio.get_running_loop(), self.wake.set)
                try:
                    await asyncio.wait_for(self.wake.wait(), self.next_due())
                except asyncio.TimeoutError:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - report and let the kubelet retry the pod
            log.exception("pod %s/%s worker failed", self.ns, self.name)
            raise

    def processes(self) -> list[runtime.Process]:
        return [p for p in [self.pause, *(c.proc for c in self.containers)] if p is not None]

    def next_due(self) -> float:
        """Seconds until the next thing a sync must do on time (a probe, a restart), at most TICK."""
        t = time.monotonic()
        due = [c.next_start for c in self.containers if c.proc is None and not c.done]
        due += [c.probe_schedule(k)["next"] for c in self.containers if c.proc is not None
                for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c.spec]
        return min([TICK, *(d - t for d in due)]) if due else TICK

    def forget_process(self, proc: runtime.Process | None) -> None:
        if proc is not None:
            proc.unwatch(asyncio.get_running_loop())

    async def sync(self) -> None:
        if self.k.tokens.due(self.uid):
            await self.refresh_tokens()
        if self.pause is None or not self.pause.alive():
            if not await self.make_sandbox():
                await self.report()
                return
        if self.phase_override is None:
            await self.run_containers()
            await self.probe()
        await self.report()

    async def make_sandbox(self) -> bool:
        """Namespace, CNI ADD (once: the result is kept, so a restart neither re-adds nor changes
        the pod's IP), pause process."""
        if self.sandbox_error and time.monotonic() < self.sandbox_retry:
            return False
        self.where.logs.mkdir(parents=True, exist_ok=True)
        try:
            if self.pause is None:  # as upstream's kubelet says RunPodSandbox began, before the network
                log.info('Creating PodSandbox pod="%s/%s" podUID=%s', self.ns, self.name, self.uid)
            if self.netns:
                fresh = not net.ns_exists(self.netns)
                await asyncio.to_thread(net.ns_create, self.netns, net.POD_SYSCTLS)  # a pod forwards nothing
                if fresh or self.cni_result is None:
                    if self.cni_result is not None:  # the namespace vanished: give back the old attachment
                        await self.cni_del()
                    self.cni_result = await self.k.cni.add(self.pod, net.ns_path(self.netns),
                                                           {"portMappings": port_mappings(self.pod)})
                    # what upstream's CNI plugins log per ADD (pod and address), for `netlab explain`
                    log.info('CNI ADD pod="%s/%s" podUID=%s ips=%s', self.ns, self.name, self.uid,
                             ",".join(ip["address"] for ip in self.cni_result.get("ips", [])))
                ips = [ip["address"].split("/")[0] for ip in self.cni_result.get("ips", [])]
                self.ip = ips[0] if ips else None
            else:
                self.ip = self.k.node_ip
            self.forget_process(self.pause)
            self.pause = await asyncio.to_thread(runtime.start_pause, self.k.runtime, self.netns,
                                                 runtime.pod_hostname(self.pod), self.where, self.pod.get("spec") or {},
                                                 self.k.node_layout.rootfs, volumes.tmpfs_volumes(self.pod))
            self.start_time = self.start_time or clock.now()
            self.sandbox_error = None
            for c in self.containers:  # a new sandbox: containers start again
                self.forget_process(c.proc)
                if c.proc is not None and c.proc.alive():
                    runtime.stop([c.proc], 0)
                c.proc, c.done = None, False if not c.init else c.done
            self.save()
            return True
        except (CNIError, net.NetError, OSError, RuntimeError) as e:
            msg = f"Failed to create pod sandbox: {e}"
            if msg != self.sandbox_error:
                await self.record("FailedCreatePodSandBox", msg, "Warning")
            self.sandbox_error = msg
            self.sandbox_retry = time.monotonic() + 2
            return False

    def uses(self, kind: str, name: str) -> bool:
        """Whether a volume of the pod reads the ConfigMap (kind "configMap") or Secret ("secret")."""
        key = {"configMap": "name", "secret": "secretName", "persistentVolumeClaim": "claimName"}[kind]
        for v in (self.pod.get("spec") or {}).get("volumes") or []:
            if (v.get(kind) or {}).get(key) == name:
                return True
            if any((src.get(kind) or {}).get("name") == name for src in (v.get("projected") or {}).get("sources") or []):
                return True
        return False

    def uses_configmap(self, name: str) -> bool:
        return self.uses("configMap", name)

    def configmap_came(self, name: str, kind: str = "configMap") -> None:
        """A ConfigMap (or Secret) was made or changed: containers waiting for it (in their env:
        CreateContainerConfigError; in a volume: ContainerCreating after FailedMount) are tried again now."""
        mounted = self.uses(kind, name)
        waiting = [c for c in self.containers if c.proc is None and not c.done and (
            (c.state.get("waiting", {}).get("reason") == "CreateContainerConfigError"
             and name in runtime.configmaps_named(c.spec, kind)) or (mounted and c.mount_error))]
        for c in waiting:
            c.next_start = 0.0
        if waiting:
            self.wake.set()

    async def refresh_volumes(self) -> None:
        """A ConfigMap or Secret the pod mounts changed: its volumes follow (the atomic writer's
        swap, which running containers see at once), as the kubelet's periodic volume sync does."""
        with contextlib.suppress(volumes.VolumeError, OSError, ApiError):
            await asyncio.to_thread(volumes.prepare, self.pod, self.where, self.k.configmaps(self.ns),
                                    self.k.secrets(self.ns), *self.identity(), self.fs_group(),
                                    claims=self.k.claims(self.ns))

    def identity(self) -> tuple:
        """The pod's token source (bound tokens of its service account) and the lab's CA."""
        return self.k.tokens.source(self.pod), self.k.ca

    async def refresh_tokens(self) -> None:
        """A token is past 80% of its life: the files that hold it are written again with a new one."""
        with contextlib.suppress(volumes.VolumeError, OSError, ApiError):
            await asyncio.to_thread(runtime.service_account, self.pod, self.where, *self.identity())
        await self.refresh_volumes()

    def fs_group(self) -> int | None:
        return ((self.pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")

    def _files(self) -> dict[str, str]:
        return {"hosts": runtime.hosts_file(self.pod, self.ip, self.k.cluster.dns_domain),
                "resolv.conf": runtime.resolv_conf(self.pod, self.k.cluster.dns_service_ip, self.k.cluster.dns_domain),
                "hostname": runtime.pod_hostname(self.pod) + "\n"}

    async def waiting(self, c: Container, reason: str, message: str, event: str | None, retry: float = 10) -> None:
        """The container cannot start yet: it waits with `reason`, an event says why once, and it is
        tried again in `retry` seconds (or sooner, when what it waits for comes)."""
        if event and c.state.get("waiting", {}).get("message") != message:
            await self.record(event, message if event == "FailedMount" else f"Error: {message}", "Warning")
        c.state = {"waiting": {"reason": reason, "message": message}}
        c.next_start = time.monotonic() + retry

    async def start(self, c: Container) -> None:
        spec, pod_spec = c.spec, self.pod.get("spec") or {}
        try:
            argv = argv_for(spec.get("image", ""), spec.get("command"), spec.get("args"))
        except UnknownImage as e:
            if c.state.get("waiting", {}).get("reason") != "ErrImagePull":
                await self.record("Failed", f'Failed to pull image "{spec.get("image")}": {e}', "Warning")
            c.state = {"waiting": {"reason": "ErrImagePull", "message": str(e)}}
            c.next_start = time.monotonic() + 10
            return
        configmaps, secrets = self.k.configmaps(self.ns), self.k.secrets(self.ns)
        c.mount_error = False
        try:
            sources = await asyncio.to_thread(volumes.prepare, self.pod, self.where, configmaps, secrets,
                                              *self.identity(), self.fs_group(), claims=self.k.claims(self.ns))
        except (volumes.VolumeError, OSError, ApiError) as e:  # upstream: ContainerCreating, FailedMount events
            c.mount_error = True
            await self.waiting(c, "ContainerCreating", str(e), "FailedMount")
            return
        try:
            ips = [ip["address"].split("/")[0] for ip in (self.cni_result or {}).get("ips", [])] or self.ip
            env = runtime.container_env(self.pod, spec, self.k.services(self.ns), self.k.node_ip, ips, configmaps,
                                        secrets)
            # $(VAR) in command and args, from the container's environment (the image's own are not expanded)
            argv = argv_for(spec.get("image", ""), expand_all(spec.get("command"), env), expand_all(spec.get("args"), env))
            sec = security.context(self.pod, spec, sandbox.last_cap())
            res = security.resources(spec)
        except (runtime.ConfigError, security.ConfigError, ValueError) as e:  # tried again, or when what it names comes
            await self.waiting(c, "CreateContainerConfigError", str(e), "Failed")
            return
        mounts = [{"source": str(path), "destination": dst, "readOnly": False}
                  for dst, path in (await asyncio.to_thread(runtime.pod_files, self.where, self._files())).items()
                  if not any(m["mountPath"].rstrip("/") == dst for m in spec.get("volumeMounts") or [])]
        try:
            sa = await asyncio.to_thread(runtime.service_account, self.pod, self.where, *self.identity())
        except ApiError as e:  # upstream: the kube-api-access volume fails to mount, and is tried again
            c.mount_error = True
            # tried again soon: the usual cause is a namespace whose default ServiceAccount is not made yet
            await self.waiting(c, "ContainerCreating", f'MountVolume.SetUp failed for volume "kube-api-access": '
                               f'{e.message or e.reason}', "FailedMount", retry=1)
            return
        if sa is not None and not any(m["mountPath"].rstrip("/") == volumes.SERVICE_ACCOUNT_PATH
                                      for m in spec.get("volumeMounts") or []):
            mounts.append({"source": str(sa), "destination": volumes.SERVICE_ACCOUNT_PATH, "readOnly": True})
        more, problems = volumes.container_mounts(spec, sources, env, self.pause.pid if self.pause else None)
        if problems:
            await self.waiting(c, "CreateContainerConfigError", "; ".join(problems), "Failed")
            return
        pidns = None
        if c.ephemeral and spec.get("targetContainerName"):  # kubectl debug --target: the target's processes
            target = next((x for x in self.containers if x.name == spec["targetContainerName"]), None)
            if target is None or target.proc is None or not target.proc.alive():
                await self.waiting(c, "ContainerCreating", f"target container {spec['targetContainerName']} is not "
                                   "running", None, 1)
                return
            pidns = f"/proc/{target.proc.pid}/ns/pid"
        c.security, c.cgroup = sec, (self.where.container_cgroup(c.name, c.restarts) if self.where.cgroup else None)
        log_file = self.where.log(c.name)
        if c.restarts and log_file.exists():
            log_file.replace(self.where.log(c.name, previous=True))
        if not c.restarts and not c.proc:
            await self.record("Pulled", f'Container image "{spec.get("image")}" already present on machine')
        req = runtime.container_request(netns=self.netns, pause=self.pause, spec=pod_spec, argv=argv, env=env,
                                        workdir=spec.get("workingDir", "/"), mounts=mounts + more, log=log_file,
                                        cgroup=c.cgroup, security=sec, resources=res, scratch=self.k.node_layout.rootfs,
                                        container=spec, attach=self.k.node_layout.attach_socket(self.uid, c.name),
                                        pidns=pidns)
        try:
            c.proc = await asyncio.to_thread(runtime.start_container, self.k.runtime, req, self.where.exit_file(c.name))
        except runtime.Unavailable as e:  # no runtime to ask: the container waits, and is tried again
            c.state = {"waiting": {"reason": "RunContainerError", "message": str(e)}}
            c.next_start = time.monotonic() + 2
            return
        except RuntimeError as e:  # the process could not start (no such command, a mount failed)
            await self.start_failed(c, str(e))
            return
        c.started_at, c.t0, c.env = clock.now(), time.monotonic(), env
        log.info('container started pod="%s/%s" containerName="%s" pid=%d', self.ns, self.name, c.name, c.proc.pid)
        c.probe_state = {}
        c.ready, c.startup_ok = False, "startupProbe" not in spec
        if c.restarts == 0:
            await self.record("Created", f"Created container {c.name}")
            await self.record("Started", f"Started container {c.name}")
        self.save()
        post = (spec.get("lifecycle") or {}).get("postStart")
        if post:  # the container is not running (ContainerCreating) until its postStart hook is done
            await self.report()
            ok, msg = await self.run_hook(c, post, None)
            if not ok:
                log.warning('PostStartHook failed pod="%s/%s" containerName="%s": %s', self.ns, self.name, c.name, msg)
                await self.record("FailedPostStartHook", "PostStartHook failed", "Warning")
                await self.kill(c, self._grace(c))
                await self.exited(c, (self.pod.get("spec") or {}).get("restartPolicy", "Always"))
                if not c.done and c.state.get("waiting", {}).get("reason") != "CrashLoopBackOff":
                    c.state = {"waiting": {"reason": "PostStartHookError", "message": msg}}
                self.save()
                return
        c.state = {"running": {"startedAt": c.started_at}}
        self.save()

    async def run_containers(self) -> None:
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        for c in sorted(self.containers, key=lambda c: c.ephemeral):  # ephemeral ones once the pod runs
            if c.init and c.done:
                continue
            if c.ephemeral and (c.done or not all(x.done for x in self.containers if x.init)):
                continue
            if c.proc is not None and not c.proc.alive():
                await self.exited(c, policy)
            if c.proc is None and not c.done and time.monotonic() >= c.next_start:
                await self.start(c)
            if c.init and not c.done and not (c.sidecar and c.running() and c.startup_ok):
                return  # init containers run one at a time, each to success (a sidecar: started), before the rest
        await self.stop_sidecars(policy)
        self.save()

    async def stop_sidecars(self, policy: str) -> None:
        """The containers are all done (they will not restart): the sidecars are stopped, and the
        pod ends as its containers did, as upstream's kubelet ends a Job's pod with sidecars."""
        mains = [c for c in self.containers if not c.init and not c.ephemeral]
        if policy == "Always" or not mains or not all(c.done for c in mains):
            return
        for c in self.containers:
            if c.sidecar and not c.done:
                if c.proc is not None and c.proc.alive():
                    await self.kill(c, self._grace(c))
                    self.forget_process(c.proc)
                    code = await c.proc.wait_exit_code()
                    c.state = {"terminated": {"exitCode": 0 if code is None else code, "reason": "Completed" if not code
                                              else "Error", "startedAt": c.started_at, "finishedAt": clock.now(),
                                              "containerID": self.container_id(c)}}
                c.proc, c.done, c.ready = None, True, False

    async def exited(self, c: Container, policy: str) -> None:
        self.forget_process(c.proc)
        code = await c.proc.wait_exit_code()
        code = 0 if code is None else code  # its status is lost if the node's runtime went since
        log.info('container exited pod="%s/%s" containerName="%s" exitCode=%d', self.ns, self.name, c.name, code)
        reason = c.proc.exit_reason() or ("Completed" if code == 0 else "Error")
        term = {"exitCode": code, "reason": reason, "startedAt": c.started_at,
                "finishedAt": clock.now(), "containerID": self.container_id(c)}
        await self.ended(c, policy, term)

    async def start_failed(self, c: Container, why: str) -> None:
        """The process could not be started: a terminated StartError with exit code 128, restarted
        per policy with back-off, as containerd reports a failed start."""
        msg = f"failed to start container process: {why}"
        await self.record("Failed", f"Error: {msg}", "Warning")
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        c.started_at, c.t0 = "1970-01-01T00:00:00Z", time.monotonic()
        await self.ended(c, policy, {"exitCode": 128, "reason": "StartError", "message": msg,
                                     "startedAt": c.started_at, "finishedAt": clock.now(),
                                     "containerID": self.container_id(c)})

    async def ended(self, c: Container, policy: str, term: dict) -> None:
        code = term["exitCode"]
        c.proc, c.ready = None, False
        if c.ephemeral:  # never restarted
            c.done, c.state = True, {"terminated": term}
            return
        restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        if c.sidecar:  # restarted whatever its exit, while the pod's containers run
            restart = not all(x.done for x in self.containers if not x.init and not x.ephemeral) or policy == "Always"
        elif c.init:
            restart = code != 0 and policy != "Never"
            if code == 0:
                c.done, c.state = True, {"terminated": term}
                return
        if not restart:
            c.done, c.state = True, {"terminated": term}
            if c.init and not c.sidecar:
                self.phase_override = "Failed"
            return
        c.last_state = {"terminated": term}
        c.restarts += 1
        if time.monotonic() - c.t0 > 2 * BACKOFF_MAX:  # it ran long enough: start the back-off over
            c.backoff = BACKOFF_START
        delay = c.backoff if c.restarts > 1 else 0
        c.backoff = min(c.backoff * 2, BACKOFF_MAX)
        c.next_start = time.monotonic() + delay
        if delay:
            c.state = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                   f"back-off {int(delay)}s restarting failed container={c.name} "
                                   f"pod={self.name}_{self.ns}({self.uid})"}}
            await self.record("BackOff", "Back-off restarting failed container " + c.name +
                              f" in pod {self.name}_{self.ns}({self.uid})", "Warning")

    def container_id(self, c: Container) -> str:
        return f"netlab://{self.uid[:8]}-{c.name}-{c.restarts}"

    # --- probes ----------------------------------------------------------------------------

    async def probe(self) -> None:
        for c in self.containers:
            if (c.init and not c.sidecar) or c.ephemeral or c.proc is None or not c.proc.alive():
                continue
            t = time.monotonic()
            kinds = ["startupProbe"] if not c.startup_ok else ["livenessProbe", "readinessProbe"]
            for kind in kinds:
                spec = c.spec.get(kind)
                if not spec:
                    if kind == "readinessProbe":
                        c.ready = True
                    continue
                st = c.probe_schedule(kind)
                if t < st["next"]:
                    continue
                st["next"] = t + spec.get("periodSeconds", 10)
                ok, why = await self.run_probe(c, spec)
                if ok:
                    st["ok"], st["fail"] = st["ok"] + 1, 0
                else:
                    st["fail"], st["ok"] = st["fail"] + 1, 0
                    await self.record("Unhealthy", f"{kind[:-5].capitalize()} probe failed: {why}", "Warning")
                success = st["ok"] >= spec.get("successThreshold", 1)
                failed = st["fail"] >= spec.get("failureThreshold", 3)
                if kind == "readinessProbe":
                    if success:
                        c.ready = True
                    elif failed:
                        c.ready = False
                elif kind == "startupProbe" and success:
                    c.startup_ok = True
                elif failed:  # liveness or startup failed: the container is killed and restarted
                    await self.record("Killing", f"Container {c.name} failed {kind[:-5]} probe, will be restarted")
                    await self.kill(c, self._grace(c))

    def _grace(self, c: Container) -> float:
        return float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))

    async def run_probe(self, c: Container, spec: dict) -> tuple[bool, str]:
        timeout = pace.scaled(spec.get("timeoutSeconds", 1))  # a probe's 1 s is longer under emulation
        ip = self.ip or "127.0.0.1"
        try:
            if "httpGet" in spec:
                g = spec["httpGet"]
                port = self._port(c, g.get("port"))
                host = g.get("host") or ip
                r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                try:
                    hdrs = "".join(f"{h['name']}: {h['value']}\r\n" for h in g.get("httpHeaders") or [])
                    w.write(f"GET {g.get('path', '/')} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.31\r\n"
                            f"{hdrs}Connection: close\r\n\r\n".encode())
                    line = await asyncio.wait_for(r.readline(), timeout)
                finally:
                    w.close()
                code = int(line.split()[1]) if len(line.split()) > 1 else 0
                return 200 <= code < 400, f"HTTP probe failed with statuscode: {code}"
            if "tcpSocket" in spec:
                port = self._port(c, spec["tcpSocket"].get("port"))
                _, w = await asyncio.wait_for(asyncio.open_connection(spec["tcpSocket"].get("host") or ip, port),
                                              timeout)
                w.close()
                return True, ""
            if "exec" in spec:
                code, out = await asyncio.to_thread(runtime.exec_in, c.proc, spec["exec"].get("command") or [], timeout,
                                                    c.env or None, c.security, c.cgroup)
                return code == 0, out or f"command exited with {code}"
        except (OSError, asyncio.TimeoutError, ValueError) as e:
            where = spec.get("httpGet") or spec.get("tcpSocket") or {}
            return False, f"dial tcp {ip}:{where.get('port')}: {e or 'timeout'}"
        return True, ""

    # --- lifecycle hooks and stopping ----------------------------------------------------------

    async def run_hook(self, c: Container, handler: dict, timeout: float | None) -> tuple[bool, str]:
        """A postStart or preStop handler (exec, httpGet, sleep), as upstream's hook runner: an exec
        fails on a non-zero exit, an httpGet only if no answer comes; upstream's message if it fails."""
        pod = f"{self.name}_{self.ns}({self.uid})"
        if "exec" in handler:
            command = handler["exec"].get("command") or []
            code, out = await asyncio.to_thread(runtime.exec_in, c.proc, command, timeout, c.env or None, c.security,
                                                c.cgroup)
            return code == 0, (f"Exec lifecycle hook ([{' '.join(command)}]) for Container \"{c.name}\" in Pod "
                               f"\"{pod}\" failed - error: command '{' '.join(command)}' exited with {code}: , "
                               f"message: {json.dumps(out)}")
        if "httpGet" in handler:
            g = handler["httpGet"]
            host, path = g.get("host") or self.ip or "127.0.0.1", "/" + g.get("path", "").lstrip("/")
            try:
                port = self._port(c, g.get("port") or 80)
                r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                try:
                    hdrs = "".join(f"{h['name']}: {h['value']}\r\n" for h in g.get("httpHeaders") or [])
                    w.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{hdrs}Connection: close\r\n\r\n".encode())
                    await asyncio.wait_for(r.readline(), timeout)
                finally:
                    w.close()
                return True, ""
            except (OSError, asyncio.TimeoutError, ValueError) as e:
                why = e.strerror.lower() if isinstance(e, OSError) and e.strerror else str(e) or "timeout"
                return False, (f"HTTP lifecycle hook ({g.get('path', '')}) for Container \"{c.name}\" in Pod \"{pod}\" "
                               f"failed - error: Get \"http://{host}:{g.get('port')}{path}\": dial tcp "
                               f"{host}:{g.get('port')}: connect: {why}")
        if "sleep" in handler:
            await asyncio.sleep(float(handler["sleep"].get("seconds", 0)))
            return True, ""
        return False, f"Cannot run handler: Invalid handler: {handler}"

    async def kill(self, c: Container, grace: float) -> None:
        """Stop a container as upstream's killContainer: its preStop hook first (for at most the
        grace period), then SIGTERM, and SIGKILL once the rest of the grace period is gone (never
        less than 2 seconds: a minimal shutdown window)."""
        if c.proc is None or not c.proc.alive():
            return
        pre = (c.spec.get("lifecycle") or {}).get("preStop")
        if pre and grace > 0:
            t0 = time.monotonic()
            try:
                ok, msg = await asyncio.wait_for(self.run_hook(c, pre, grace), grace)
            except asyncio.TimeoutError:
                ok, msg = True, ""
                log.info('PreStop hook not completed in grace period pod="%s/%s" containerName="%s" gracePeriod=%s',
                         self.ns, self.name, c.name, grace)
            if not ok:
                log.warning('PreStop hook failed pod="%s/%s" containerName="%s": %s', self.ns, self.name, c.name, msg)
                await self.record("FailedPreStopHook", "PreStopHook failed", "Warning")
            grace -= int(time.monotonic() - t0)
        await asyncio.to_thread(runtime.stop, [c.proc], max(grace, MIN_GRACE))

    @staticmethod
    def _port(c: Container, port: Any) -> int:
        if isinstance(port, int):
            return port
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return p["containerPort"]
        return int(port)

    # --- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        spec = self.pod.get("spec") or {}
        inits = [c for c in self.containers if c.init]
        mains = [c for c in self.containers if not c.init and not c.ephemeral]
        ephemeral = [c for c in self.containers if c.ephemeral]
        initialized = all(c.done or (c.sidecar and c.running() and c.startup_ok) for c in inits)

        def cstatus(c: Container) -> dict:
            st = {"name": c.name, "image": c.spec.get("image", ""), "imageID": f"netlab://{image_name(c.spec.get('image', ''))}",
                  "ready": bool(c.ready and c.proc is not None and c.proc.alive() and c.startup_ok
                                and (not c.init or c.sidecar)) or bool(c.init and c.done and not c.sidecar),
                  "restartCount": c.restarts, "started": c.running(), "state": c.state,
                  "lastState": c.last_state}
            if c.proc is not None or "terminated" in c.state:
                st["containerID"] = self.container_id(c)
            return st
        statuses = [cstatus(c) for c in mains]
        all_ready = bool(mains) and all(s["ready"] for s in statuses) and all(  # and the running sidecars
            c.ready and c.running() for c in inits if c.sidecar and not c.done)
        if self.phase_override:
            phase = self.phase_override
        elif self.pause is None or not initialized:
            phase = "Pending"
        elif all(c.done for c in mains):
            phase = "Succeeded" if all(c.state.get("terminated", {}).get("exitCode", 1) == 0 for c in mains) \
                else "Failed"
        elif any(c.running() or c.restarts for c in mains):  # one in its postStart hook is not yet
            phase = "Running"
        else:
            phase = "Pending"
        others = (self.pod.get("status") or {}).get("conditions") or []
        # its own conditions as it last wrote them (the kubelet's status cache), else as the API has them
        old = {c["type"]: c for c in (self.last_status or {}).get("conditions") or others}

        def cond(t: str, ok: bool, reason: str = "", message: str = "") -> dict:
            status = "True" if ok else "False"
            prev = old.get(t)
            c = {"type": t, "status": status, "lastProbeTime": None,
                 "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status
                 and prev.get("lastTransitionTime") else clock.now()}
            if not ok and reason:
                c["reason"] = reason
            if not ok and message:
                c["message"] = message
            return c
        unready = [s["name"] for s in statuses if not s["ready"]]
        containers_ready = cond("ContainersReady", all_ready, "ContainersNotReady",
                                f"containers with unready status: [{' '.join(unready)}]" if unready else "")
        if not all_ready or phase != "Running":
            pod_ready = cond("Ready", False, containers_ready.get("reason", ""), containers_ready.get("message", ""))
        else:  # the containers are ready: so is the pod, once every readiness gate's condition is True
            by_type = {c.get("type"): c.get("status") for c in others}
            gates = [g["conditionType"] for g in spec.get("readinessGates") or []]
            pod_ready = cond("Ready", all(by_type.get(g) == "True" for g in gates), "ReadinessGatesNotReady", ", ".join(
                f'corresponding condition of pod readiness gate "{g}" does not exist.' if g not in by_type else
                f'the status of pod readiness gate "{g}" is not "True", but {by_type[g]}'
                for g in gates if by_type.get(g) != "True"))
        conditions = [cond("PodReadyToStartContainers", self.pause is not None),
                      cond("Initialized", initialized, "ContainersNotInitialized", "containers with incomplete status: "
                           f"[{' '.join(c.name for c in inits if not c.done)}]"),
                      pod_ready, containers_ready,
                      old.get("PodScheduled") or cond("PodScheduled", True),
                      *(c for c in others if c.get("type") not in KUBELET_CONDITIONS)]
        out = {"phase": phase, "conditions": conditions, "hostIP": self.k.node_ip,
               "hostIPs": [{"ip": self.k.node_ip}], "qosClass": (self.pod.get("status") or {}).get("qosClass",
                                                                                                  "BestEffort"),
               "containerStatuses": statuses}
        if self.start_time:
            out["startTime"] = self.start_time
        if self.ip:
            out["podIP"], out["podIPs"] = self.ip, [{"ip": self.ip}]
        if inits:
            out["initContainerStatuses"] = [cstatus(c) for c in inits]
        if ephemeral:
            out["ephemeralContainerStatuses"] = [dict(cstatus(c), ready=False) for c in ephemeral]
        if self.sandbox_error:
            out["message"] = self.sandbox_error
        return out

    async def report(self) -> None:
        """Write the pod's status if it changed. The answer is not taken as the pod: the watch may
        already have brought a newer one (say, with the deletion), and the pod comes only from there."""
        status = self.status()
        if status == self.last_status:
            return
        try:
            body = dict(self.pod, status=status)
            body["metadata"] = dict(self.pod["metadata"])
            body["metadata"].pop("resourceVersion", None)  # the kubelet owns status: last write wins
            await self.k.client.update("pods", body, subresource="status")
            self.last_status = status
        except ApiError as e:
            if e.status == 404:
                self.k.forget(self.uid)
            else:
                log.warning("pod %s/%s: status update failed: %s", self.ns, self.name, e)

    async def record(self, reason: str, message: str, type_: str = "Normal") -> None:
        try:
            await self.k.client.create("events", event(dict(self.pod, kind="Pod", apiVersion="v1"), reason, message,
                                                       type_, component="kubelet", host=self.k.node))
        except ApiError:
            pass

    # --- teardown --------------------------------------------------------------------------

    async def cni_del(self) -> None:
        if not self.netns:
            return
        try:
            await self.k.cni.delete(self.pod, net.ns_path(self.netns), self.cni_result,
                                    {"portMappings": port_mappings(self.pod)})
        except CNIError as e:
            log.warning("pod %s/%s: CNI DEL: %s", self.ns, self.name, e)

    async def terminate(self) -> None:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        live = [c for c in self.containers if c.proc is not None and c.proc.alive()]
        for c in live:
            log.info('Killing container with a grace period pod="%s/%s" containerName="%s" gracePeriod=%s',
                     self.ns, self.name, c.name, grace)
            await self.record("Killing", f"Stopping container {c.name}")
        await asyncio.gather(*(self.kill(c, float(grace)) for c in live))  # all at once, each its own deadline
        if self.pause is not None:
            await asyncio.to_thread(runtime.stop, [self.pause], 0)
        for proc in self.processes():
            self.forget_process(proc)
        if self.where.cgroup:  # whatever the pod's processes left (forked, moved elsewhere) goes with it
            await asyncio.to_thread(cgroups.remove, self.where.cgroup)
        await self.cni_del()
        if self.netns:
            await asyncio.to_thread(net.kill_ns_processes, self.netns)
            await asyncio.to_thread(net.ns_delete, self.netns)
        self.dir.remove()
        log.info('pod "%s/%s" terminated: sandbox and network torn down', self.ns, self.name)
        if meta.get("deletionTimestamp"):
            try:
                await self.k.client.request("DELETE", f"/api/v1/namespaces/{self.ns}/pods/{self.name}",
                                            {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                                             "preconditions": {"uid": self.uid}})
            except ApiError as e:
                if e.status != 404:
                    raise

