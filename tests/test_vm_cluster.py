"""A cluster over machines, in two real VMs (scripts/vm/): `netlab init` in one, `netlab join` in
the other, over a private link between the two qemu processes (a qemu socket netdev, listening and
connecting on this machine's loopback: no device in the host's namespaces, nothing beyond the two
VMs); a pod on each, pod-to-pod and Service traffic across them. It boots two VMs, so it runs only
from scripts/test-vm (NETLAB_VM_TESTS=1), on the host."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.environ.get("NETLAB_VM_TESTS") != "1",
                                reason="boots two VMs with qemu: scripts/test-vm runs it")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "vm"))

TOKEN = "abcdef.0123456789abcdef"
CP_IP, WORKER_IP = "192.168.77.10", "192.168.77.11"

# Both VMs: the private link's device (no udev in the VM: its driver is loaded by hand) and the
# directory the two share (the join command, and the control plane's word that the test is done).
LINK = """
set -eu
modprobe virtio_net
mkdir -p /exchange && mount -t 9p -o trans=virtio,version=9p2000.L exchange /exchange
ip link set eth0 up && ip addr add {ip}/24 dev eth0
"""

# The control plane's half: init, then (once the worker's node is Ready) a pod on each machine and a
# Service over both, and what they answered.
CHECK = '''
from netlab.kit.cluster import Cluster
from netlab.tools.testing import Lab

lab = Lab(cluster=Cluster.from_state("netlab"))


def ready(o):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in o.get("status", {}).get("conditions", []))


lab.wait(lambda: sorted(n["metadata"]["name"] for n in lab.items("nodes") if ready(n)) == ["vm1", "vm2"],
         timeout=300, what="both machines' nodes Ready")
print("NODES vm1 vm2 Ready", flush=True)
POD = """
apiVersion: v1
kind: Pod
metadata: {name: web-NODE, labels: {app: web}}
spec:
  nodeName: NODE
  tolerations: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]
  containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
"""
lab.apply(POD.replace("NODE", "vm1") + POD.replace("NODE", "vm2") + """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
""")
lab.wait(lambda: all(ready(lab.get("pod", f"web-{n}")) for n in ("vm1", "vm2")), timeout=300, what="the pods Ready")
ip2 = lab.get("pod", "web-vm2")["status"]["podIP"]
r = lab.exec("web-vm1", ["wget", "-qO-", "-T", "5", f"http://{ip2}:8080/hostname"], timeout=60)
print(f"POD-TO-POD web-vm1 -> {ip2}: {r.stdout.strip()}", flush=True)
vip = lab.get("service", "web")["spec"]["clusterIP"]
seen = set()
for _ in range(20):
    r = lab.exec("web-vm1", ["wget", "-qO-", "-T", "5", f"http://{vip}/hostname"], timeout=60)
    seen.add(r.stdout.strip())
print(f"SERVICE {vip} answered by: {' '.join(sorted(seen))}", flush=True)
'''

CONTROL_PLANE = LINK.format(ip=CP_IP) + f"""
trap 'touch /exchange/done; netlab down >/dev/null 2>&1' EXIT  # the worker stops waiting, whatever happened
netlab init --node-name vm1 --advertise-address {CP_IP} --token {TOKEN} | tee /exchange/init.txt
cat > /tmp/check.py <<'PYTHON'
{CHECK}
PYTHON
python /tmp/check.py
"""

WORKER = LINK.format(ip=WORKER_IP) + f"""
for i in $(seq 600); do grep -q 'netlab join' /exchange/init.txt 2>/dev/null || [ -e /exchange/done ] && break; sleep 2; done
hash=$(grep -o 'sha256:[0-9a-f]*' /exchange/init.txt)
netlab join {CP_IP}:6443 --token {TOKEN} --discovery-token-ca-cert-hash "$hash" --node-name vm2 \\
  --discovery-timeout 1200
for i in $(seq 1200); do [ -e /exchange/done ] && break; sleep 2; done
netlab down >/dev/null
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_init_in_one_vm_join_in_the_other_pods_and_a_service_across():
    import image
    import machine

    if machine.qemu_missing():
        pytest.skip(machine.qemu_missing())
    img = image.build()
    accel = machine.accelerator(img, image.DEFAULT_CACHE)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="netlab-vm-cluster-") as d:
        root = Path(d)
        (root / "exchange").mkdir()
        share = ["-virtfs", f"local,path={root / 'exchange'},mount_tag=exchange,security_model=none,id=exchange"]
        results = {}

        def vm(name: str, job: str, netdev: str, mac: str) -> None:
            results[name] = machine.run(img, job, root / name, timeout=2400, accel=accel, name=name,
                                        extra=share + ["-netdev", f"socket,id=n0,{netdev}",
                                                       "-device", f"virtio-net-pci,netdev=n0,mac={mac}"],
                                        stream=None)
        cp = threading.Thread(target=vm, args=("vm1", CONTROL_PLANE, f"listen=127.0.0.1:{port}", "52:54:00:77:00:10"))
        cp.start()
        time.sleep(3)  # the control plane's qemu listens on the port before the worker's connects
        worker = threading.Thread(target=vm, args=("vm2", WORKER, f"connect=127.0.0.1:{port}", "52:54:00:77:00:11"))
        worker.start()
        cp.join()
        worker.join()
        out1, out2 = results["vm1"].output, results["vm2"].output
        print(results["vm1"].summary, results["vm2"].summary)
        assert results["vm1"].rc == 0, out1 + "\n--- vm2:\n" + out2
        assert results["vm2"].rc == 0 and "node vm2 (192.168.77.11" in out2, out2
        assert "NODES vm1 vm2 Ready" in out1
        assert "POD-TO-POD web-vm1 -> " in out1 and out1.split("POD-TO-POD")[1].split("\n")[0].endswith(": web-vm2"), out1
        assert "answered by: web-vm1 web-vm2" in out1, out1
