"""A kubelet pod worker against the real API server, where the order of answers matters: the watch
can bring a newer pod (say, being deleted) before the answer to the worker's own status write."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from netlab.api.client import Client
from netlab.kit.layout import Layout, NodeLayout
from netlab.node.kubelet.pods import PodWorker
from tests.apikit import ControlPlane

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "raced", "namespace": "default"},
       "spec": {"nodeName": "nltpw-worker", "containers": [{"name": "c", "image": "busybox"}]}}


def test_a_status_answer_older_than_the_watch_does_not_undo_a_deletion(tmp_path):
    with ControlPlane("nltpw") as cp:
        async def go():
            async with Client.from_kubeconfig(cp.kubeconfig) as client:
                pod = await client.create("pods", POD)
                kubelet = SimpleNamespace(lab="nltpw", layout=Layout("nltpw"), node_layout=NodeLayout(tmp_path),
                                          node_ip="172.18.0.9", client=client, forget=lambda uid: None)
                worker = PodWorker(kubelet, pod)
                write_status = client.update

                async def deleted_before_the_answer(*args, **kwargs):
                    answer = await write_status(*args, **kwargs)
                    # kubectl delete lands, and the watch brings it, before the status answer arrives
                    await client.delete("pods", "raced", "default", grace_period_seconds=30)
                    worker.update(await client.get("pods", "raced", "default"))
                    return answer
                client.update = deleted_before_the_answer
                await worker.report()
                assert worker.last_status is not None, "the status was written"
                assert worker.pod["metadata"].get("deletionTimestamp"), "the worker must still see the deletion"
                stored = await client.get("pods", "raced", "default")
                assert stored["status"]["phase"] == "Pending" and stored["status"]["hostIP"] == "172.18.0.9"
        asyncio.run(go())


class _Alive:
    pid, started = 1, 0

    def alive(self):
        return True


def test_a_running_sidecar_counts_as_initialized_and_in_readiness(tmp_path):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "side", "namespace": "default", "uid": "u-side"},
           "spec": {"nodeName": "w", "initContainers": [
               {"name": "ship", "image": "alpine", "restartPolicy": "Always"}, {"name": "setup", "image": "alpine"}],
               "containers": [{"name": "app", "image": "alpine"}]}}
    kubelet = SimpleNamespace(lab="nltpw", layout=Layout("nltpw"), node_layout=NodeLayout(tmp_path), node_ip="172.18.0.9")
    w = PodWorker(kubelet, pod)
    ship, setup, app = w.containers
    assert ship.sidecar and not setup.sidecar and not app.sidecar
    w.pause = _Alive()
    ship.proc, ship.state, ship.ready = _Alive(), {"running": {"startedAt": "t"}}, False
    setup.done, setup.state = True, {"terminated": {"exitCode": 0}}
    app.proc, app.state, app.ready = _Alive(), {"running": {"startedAt": "t"}}, True
    st = w.status()
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds["Initialized"] == "True" and st["phase"] == "Running"
    assert conds["Ready"] == "False"  # the sidecar is not ready yet
    ship.ready = True
    w.last_status = None
    st = w.status()
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    assert [s["ready"] for s in st["initContainerStatuses"]] == [True, True]
