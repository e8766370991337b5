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
