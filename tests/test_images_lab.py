"""The image catalog's servers in a running lab, reached as the tutorials reach them: redis answers
PING through its Service, a mysql pod initialized from MYSQL_ROOT_PASSWORD takes a login and a
query, the guestbook (redis leader, follower and PHP frontend) stores an entry and gives it back
through its Service, serve_hostname answers with its pod's name on 9376, httpd serves "It works!",
and a container whose command is `/agnhost ...` runs agnhost."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.lab
TOOLBOX = "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3"

APPS = f"""
apiVersion: v1
kind: Pod
metadata: {{name: nltclient}}
spec:
  containers:
  - {{name: c, image: {TOOLBOX}, command: [sleep, infinity]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: redis-leader}}
spec:
  selector: {{matchLabels: {{app: redis, role: leader}}}}
  template:
    metadata: {{labels: {{app: redis, role: leader, nlt: images}}}}
    spec:
      containers: [{{name: leader, image: "docker.io/redis:6.0.5", ports: [{{containerPort: 6379}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: redis-leader}}
spec:
  selector: {{app: redis, role: leader}}
  ports: [{{port: 6379, targetPort: 6379}}]
---
apiVersion: v1
kind: Service
metadata: {{name: redis-follower}}
spec:
  selector: {{app: redis, role: follower}}
  ports: [{{port: 6379}}]
---
apiVersion: v1
kind: Service
metadata: {{name: frontend}}
spec:
  selector: {{app: guestbook, tier: frontend}}
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: nltmysql, labels: {{app: nltmysql, nlt: images}}}}
spec:
  containers:
  - name: mysql
    image: mysql:5.6
    env:
    - {{name: MYSQL_ROOT_PASSWORD, value: "pass'word"}}
    - {{name: MYSQL_DATABASE, value: shop}}
    - {{name: MYSQL_USER, value: ann}}
    - {{name: MYSQL_PASSWORD, value: annpw}}
    ports: [{{containerPort: 3306}}]
---
apiVersion: v1
kind: Service
metadata: {{name: nltmysql}}
spec:
  selector: {{app: nltmysql}}
  ports: [{{port: 3306}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: nlthostnames, labels: {{app: nlthostnames, nlt: images}}}}
spec:
  containers: [{{name: c, image: registry.k8s.io/serve_hostname}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: nlthttpd, labels: {{nlt: images}}}}
spec:
  containers: [{{name: c, image: "httpd:2.4"}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: nltagnhost, labels: {{nlt: images}}}}
spec:
  containers:
  - name: c
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    command: [/agnhost, serve-hostname, --tcp, --http=false, --port=8081]
"""

GUESTBOOK = """
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis-follower}
spec:
  selector: {matchLabels: {app: redis, role: follower}}
  template:
    metadata: {labels: {app: redis, role: follower, nlt: images}}
    spec:
      containers:
      - {name: follower, image: "us-docker.pkg.dev/google-samples/containers/gke/gb-redis-follower:v2",
         ports: [{containerPort: 6379}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend}
spec:
  selector: {matchLabels: {app: guestbook, tier: frontend}}
  template:
    metadata: {labels: {app: guestbook, tier: frontend, nlt: images}}
    spec:
      containers:
      - name: php-redis
        image: docker.io/corelab/gb-frontend:v5
        env: [{name: GET_HOSTS_FROM, value: dns}]
        ports: [{containerPort: 80}]
"""


@pytest.fixture(scope="module")
def apps(netlab_lab):
    lab = netlab_lab
    lab.kubectl("apply", "-f", "-", input=APPS)
    try:
        lab.wait_ready("nlt=images", count=5, timeout=120)
        lab.wait(lambda: lab.get("pods", "nltclient")["status"].get("phase") == "Running", timeout=60,
                 what="the client pod running")
        client = lab.get("pods", "nltclient")
        # as the tutorial goes: the followers once the leader answers through its Service (a first
        # connection to a just-ready Service can hang; a replica's waits out its 60 s repl-timeout)
        lab.wait(lambda: "PONG" in sh(lab, client, "timeout 3 redis-cli -h redis-leader ping").stdout, timeout=60,
                 what="the leader answering through its Service")
        lab.kubectl("apply", "-f", "-", input=GUESTBOOK)
        lab.wait_ready("nlt=images", count=7, timeout=120)
        yield lab, client
    finally:
        lab.kubectl("delete", "-f", "-", "--wait=false", "--ignore-not-found", input=GUESTBOOK)
        lab.kubectl("delete", "-f", "-", "--wait=false", input=APPS)


def sh(lab, pod, script: str, timeout: float = 30):
    return lab.exec(pod, ["sh", "-c", script], timeout=timeout)


def test_redis_answers_ping_through_its_service(apps):
    lab, client = apps
    out = lab.wait(lambda: "+PONG" in sh(lab, client, "printf 'PING\\r\\n' | nc -q 2 redis-leader 6379").stdout,
                   timeout=30, what="redis PONG")
    assert out
    assert sh(lab, client, "redis-cli -h redis-leader ping").stdout.strip() == "PONG"


def test_guestbook_stores_and_returns_an_entry(apps):
    lab, client = apps
    # the follower has replicated the leader
    try:
        lab.wait(lambda: "master_link_status:up" in sh(lab, client, "timeout 3 redis-cli -h redis-follower info replication")
                 .stdout, timeout=60, what="follower linked to its leader")
    except TimeoutError as e:  # what the follower said, with the failure
        logs = lab.kubectl("logs", "deploy/redis-follower", "--tail=30", check=False)
        raise AssertionError(f"{e}\n{logs.stdout}{logs.stderr}") from None
    set_ = sh(lab, client, "curl -s 'http://frontend/guestbook.php?cmd=set&key=messages&value=hello,netlab'")
    assert set_.stdout.strip() == '{"message": "Updated"}', set_
    got = lab.wait(lambda: (r := sh(lab, client, "curl -s 'http://frontend/guestbook.php?cmd=get&key=messages'"))
                   .stdout.strip() == '{"data":"hello,netlab"}' and r, timeout=20, what="the entry back")
    assert got
    assert "<title>Guestbook</title>" in sh(lab, client, "curl -s http://frontend/").stdout


def test_mysql_accepts_a_login_and_a_query(apps):
    lab, client = apps
    query = "mysql -h nltmysql -uroot -p\"pass'word\" -N -e 'SELECT 6*7'"
    out = lab.wait(lambda: sh(lab, client, query).stdout.strip(), timeout=90, what="mysql answers")
    assert out == "42"
    # MYSQL_USER owns MYSQL_DATABASE; a wrong password is refused as MySQL refuses it
    ann = sh(lab, client, "mysql -h nltmysql -uann -pannpw shop -N -e 'CREATE TABLE t (x INT); "
                          "INSERT INTO t VALUES (7); SELECT x FROM t'")
    assert ann.stdout.strip() == "7", ann
    bad = sh(lab, client, "mysql -h nltmysql -uroot -pwrong -e 'SELECT 1'")
    assert bad.returncode != 0 and "Access denied for user 'root'" in bad.stderr


def test_serve_hostname_httpd_and_agnhost_command(apps):
    lab, client = apps
    ip = lab.get("pods", "nlthostnames")["status"]["podIP"]
    assert sh(lab, client, f"curl -s {ip}:9376").stdout == "nlthostnames"
    ip = lab.get("pods", "nlthttpd")["status"]["podIP"]
    assert sh(lab, client, f"curl -s {ip}/").stdout == "<html><body><h1>It works!</h1></body></html>\n"
    ip = lab.get("pods", "nltagnhost")["status"]["podIP"]
    assert sh(lab, client, f"nc -q 2 {ip} 8081 </dev/null").stdout == "nltagnhost"


def test_pods_weigh_as_their_nodes_allocatable_cpu(apps):
    """As the kubelet gives `kubepods` the node's allocatable CPU as its weight, the node's, lab's
    and netlab's cgroups weigh the machine's CPUs (cpu.shares 1024 each, or cpu.weight as
    converted from it): a tree of pods is not one process's worth of CPU beside the host's."""
    from netlab.kit import cgroups
    lab, _ = apps
    pod = lab.get("pods", "nlthostnames")
    node = lab.cluster.layout.node(pod["spec"]["nodeName"]).cgroup
    cpu = next((h for h in cgroups.hierarchies() if "cpu" in h.controllers), None)
    if cpu is None:
        pytest.skip("no cpu cgroup controller on this machine")
    shares = (os.cpu_count() or 1) * 1024
    want = str(shares) if cpu.version == 1 else str(1 + ((shares - 2) * 9999) // 262142)
    name = "cpu.shares" if cpu.version == 1 else "cpu.weight"
    for path in (node, lab.cluster.layout.cgroup, "netlab"):
        assert (cpu.root / path / name).read_text().strip() == want, path
