"""Pods that behave like containers, in the kubelet's part: a container's environment from
ConfigMaps that may not be there yet (CreateContainerConfigError until they are), postStart and
preStop hooks (exec, httpGet), and a termination that waits for the preStop hook within the grace
period, then SIGTERM, then SIGKILL at the deadline. The containers do not see the host's /tmp (they
have a root of their own), so the test's tmp_path is mounted into them (hostPath) and the hooks
leave their marks there."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.lab
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.39"


def pod(name: str, containers: list[dict], **spec) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": containers, **spec}})


def shared(path, containers: list[dict]) -> dict:
    """The spec fields that mount the test's directory into every container at the same path, where
    the test and the containers leave each other marks (a container's root is its own: the host's
    /tmp is not in it)."""
    mount = {"name": "test-dir", "mountPath": str(path)}
    return {"containers": [dict(c, volumeMounts=[*c.get("volumeMounts", []), mount]) for c in containers],
            "volumes": [{"name": "test-dir", "hostPath": {"path": str(path), "type": "Directory"}}]}


def status(lab, name: str, container: int = 0) -> dict:
    return (lab.get("pods", name)["status"].get("containerStatuses") or [{}])[container]


def events(lab, name: str) -> list[tuple[str, str]]:
    return [(e["reason"], e.get("message", "")) for e in lab.items("events")
            if e["involvedObject"].get("name") == name]


def gone(lab, name: str) -> bool:
    return not any(p["metadata"]["name"] == name for p in lab.items("pods"))


def test_env_from_a_missing_configmap_waits_as_create_container_config_error(netlab_lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=pod("envy", [{
        "name": "c", "image": AGNHOST, "args": ["pause"],
        "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "greeting"}}},
                {"name": "MAYBE", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}}],
        "envFrom": [{"configMapRef": {"name": "nope", "optional": True}}]}]))

    def waiting(message: str):
        w = status(lab, "envy").get("state", {}).get("waiting") or {}
        return w if w.get("reason") == "CreateContainerConfigError" and w.get("message") == message else None
    lab.wait(lambda: waiting('configmap "later" not found'), 30, "CreateContainerConfigError")
    assert ("Failed", 'Error: configmap "later" not found') in events(lab, "envy")
    assert lab.get("pods", "envy")["status"]["phase"] == "Pending"
    lab.kubectl("create", "configmap", "later", "--from-literal=other=x")
    lab.wait(lambda: waiting("couldn't find key greeting in ConfigMap default/later"), 30, "the key missing")
    lab.kubectl("patch", "configmap", "later", "-p", json.dumps({"data": {"greeting": "hello"}}))
    lab.wait(lambda: status(lab, "envy").get("state", {}).get("running"), 15, "envy running once the key is there")
    assert lab.kubectl("exec", "envy", "--", "printenv", "GREETING").stdout == "hello\n"
    assert lab.kubectl("exec", "envy", "--", "printenv", "MAYBE", check=False).returncode == 1  # optional: unset
    lab.kubectl("delete", "pod", "envy", "--grace-period=1")
    lab.kubectl("delete", "configmap", "later")


def test_post_start_hooks_run_before_the_container_counts_as_running(netlab_lab, tmp_path):
    lab = netlab_lab
    mark = tmp_path / "post-start"
    lab.kubectl("apply", "-f", "-", input=pod("poster", **shared(tmp_path, [{
        "name": "c", "image": AGNHOST, "args": ["netexec", "--http-port=8091", "--udp-port=-1"],
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", f"sleep 2; echo $HOSTNAME > {mark}"]}}}}])))
    seen: list[tuple[str, bool, bool]] = []  # (phase, running?, hook done?) as the API shows them

    def running() -> bool:
        p = lab.get("pods", "poster")
        state = ((p["status"].get("containerStatuses") or [{}])[0]).get("state", {})
        seen.append((p["status"].get("phase"), bool(state.get("running")), mark.exists()))
        return bool(state.get("running"))
    lab.wait(running, 30, "running after the hook", interval=0.05)
    assert ("Pending", False, False) in seen, "the hook runs while the container is not yet running (ContainerCreating)"
    assert not any(run and not done for _, run, done in seen), "running only once the hook is done"
    assert mark.read_text() == "poster\n", "the hook ran in the container, with its environment"
    lab.kubectl("delete", "pod", "poster", "--grace-period=1")
    # a hook that fails: the container is killed and restarted per its policy
    lab.kubectl("apply", "-f", "-", input=pod("badpost", [{
        "name": "c", "image": AGNHOST, "args": ["pause"],
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}}}}]))
    lab.wait(lambda: ("FailedPostStartHook", "PostStartHook failed") in events(lab, "badpost"), 30, "the event")
    lab.wait(lambda: status(lab, "badpost").get("restartCount", 0) >= 1, 30, "a restart")
    st = status(lab, "badpost")
    assert st.get("state", {}).get("waiting", {}).get("reason") in ("PostStartHookError", "CrashLoopBackOff"), st
    assert not st["ready"]
    lab.kubectl("delete", "pod", "badpost", "--grace-period=1")


def test_termination_waits_for_the_pre_stop_hook_then_sigterm(netlab_lab, tmp_path):
    lab = netlab_lab
    term, started, ended = tmp_path / "term", tmp_path / "pre-stop-start", tmp_path / "pre-stop-end"
    lab.kubectl("apply", "-f", "-", input=pod("stopper", **shared(tmp_path, [{
        "name": "c", "image": "busybox",
        "command": ["sh", "-c", f"trap 'date +%s.%N > {term}; exit 0' TERM; while true; do sleep 0.1; done"],
        "lifecycle": {"preStop": {"exec": {"command": [
            "sh", "-c", f"date +%s.%N > {started}; sleep 2; date +%s.%N > {ended}"]}}}}]),
        terminationGracePeriodSeconds=10))
    lab.wait(lambda: status(lab, "stopper").get("ready"), 30, "stopper ready")
    t0 = time.time()
    lab.kubectl("delete", "pod", "stopper", "--wait=false")
    lab.wait(lambda: gone(lab, "stopper"), 20, "stopper gone")
    t_start, t_end, t_term = (float(p.read_text()) for p in (started, ended, term))
    assert t0 <= t_start < t_end <= t_term, "SIGTERM only once the hook is done"
    assert t_end - t_start >= 2 and t_term - t0 < 8


def test_a_pre_stop_hook_longer_than_the_grace_period_is_cut_and_the_container_killed(netlab_lab, tmp_path):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=pod("stubborn", [{
        "name": "c", "image": "busybox", "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "60"]}}}}], terminationGracePeriodSeconds=3))
    lab.wait(lambda: status(lab, "stubborn").get("ready"), 30, "stubborn ready")
    t0 = time.monotonic()
    lab.kubectl("delete", "pod", "stubborn", "--wait=false")
    lab.wait(lambda: gone(lab, "stubborn"), 30, "stubborn gone")
    took = time.monotonic() - t0
    # the hook for the grace period (3 s), then SIGTERM (ignored) and SIGKILL 2 s later
    assert 4.5 <= took < 12, took


def test_an_http_pre_stop_hook_reaches_the_container_and_a_failing_one_is_an_event(netlab_lab, tmp_path):
    lab = netlab_lab
    mark = tmp_path / "http-pre-stop"
    lab.kubectl("apply", "-f", "-", input=pod("hooked", **shared(tmp_path, [
        {"name": "web", "image": AGNHOST, "args": ["netexec", "--http-port=8092", "--udp-port=-1"],
         "lifecycle": {"preStop": {"httpGet": {"path": f"/shell?shellCommand=touch%20{mark}", "port": 8092}}}},
        {"name": "nobody", "image": AGNHOST, "args": ["pause"],
         "lifecycle": {"preStop": {"httpGet": {"path": "/", "port": 8093}}}}]), terminationGracePeriodSeconds=5))
    lab.wait(lambda: all(s.get("ready") for s in lab.get("pods", "hooked")["status"].get("containerStatuses") or [{}]),
             30, "hooked ready")
    lab.kubectl("delete", "pod", "hooked", "--wait=false")
    lab.wait(lambda: ("FailedPreStopHook", "PreStopHook failed") in events(lab, "hooked"), 20, "the failed hook's event")
    lab.wait(lambda: gone(lab, "hooked"), 20, "hooked gone")
    assert mark.exists(), "the httpGet hook reached netexec's /shell in the container"
