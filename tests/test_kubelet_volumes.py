# ruff: noqa: E501 - the examples are as the Kubernetes website writes them
"""Volumes, with the Kubernetes website's basic pod examples as written (kubernetes.io: the
two-container pod sharing an emptyDir, init containers waiting for Services, a Secret as files and
as environment variables, a projected volume, the downward API as environment and as files),
checked by what the pod prints or serves; then a mounted ConfigMap's and Secret's update reaching
the running pod (the atomic writer's ..data swap), a memory-backed emptyDir shared by two
containers, and a hostPath of the wrong type held as FailedMount."""

from __future__ import annotations

import base64
import json

import pytest

pytestmark = pytest.mark.lab

TWO_CONTAINERS = """
apiVersion: v1
kind: Pod
metadata:
  name: two-containers
spec:

  restartPolicy: Never

  volumes:
  - name: shared-data
    emptyDir: {}

  containers:

  - name: nginx-container
    image: nginx
    volumeMounts:
    - name: shared-data
      mountPath: /usr/share/nginx/html

  - name: debian-container
    image: debian
    volumeMounts:
    - name: shared-data
      mountPath: /pod-data
    command: ["/bin/sh"]
    args: ["-c", "echo Hello from the debian container > /pod-data/index.html"]
"""

MYAPP = """
apiVersion: v1
kind: Pod
metadata:
  name: myapp-pod
  labels:
    app.kubernetes.io/name: MyApp
spec:
  containers:
  - name: myapp-container
    image: busybox:1.28
    command: ['sh', '-c', 'echo The app is running! && sleep 3600']
  initContainers:
  - name: init-myservice
    image: busybox:1.28
    command: ['sh', '-c', "until nslookup myservice.$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace).svc.cluster.local; do echo waiting for myservice; sleep 2; done"]
  - name: init-mydb
    image: busybox:1.28
    command: ['sh', '-c', "until nslookup mydb.$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace).svc.cluster.local; do echo waiting for mydb; sleep 2; done"]
"""

MYAPP_SERVICES = """
---
apiVersion: v1
kind: Service
metadata:
  name: myservice
spec:
  ports:
  - protocol: TCP
    port: 80
    targetPort: 9376
---
apiVersion: v1
kind: Service
metadata:
  name: mydb
spec:
  ports:
  - protocol: TCP
    port: 80
    targetPort: 9377
"""

SECRET = """
apiVersion: v1
kind: Secret
metadata:
  name: test-secret
data:
  username: bXktYXBw
  password: Mzk1MjgkdmRnN0pi
"""

SECRET_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: secret-test-pod
spec:
  containers:
    - name: test-container
      image: nginx
      volumeMounts:
        # name must match the volume name below
        - name: secret-volume
          mountPath: /etc/secret-volume
          readOnly: true
  # The secret data is exposed to Containers in the Pod through a Volume.
  volumes:
    - name: secret-volume
      secret:
        secretName: test-secret
"""

SECRET_ENV_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: env-single-secret
spec:
  containers:
  - name: envars-test-container
    image: nginx
    env:
    - name: SECRET_USERNAME
      valueFrom:
        secretKeyRef:
          name: backend-user
          key: backend-username
"""

PROJECTED = """
apiVersion: v1
kind: Pod
metadata:
  name: test-projected-volume
spec:
  containers:
  - name: test-projected-volume
    image: busybox:1.28
    args:
    - sleep
    - "86400"
    volumeMounts:
    - name: all-in-one
      mountPath: "/projected-volume"
      readOnly: true
  volumes:
  - name: all-in-one
    projected:
      sources:
      - secret:
          name: user
      - secret:
          name: pass
"""

DAPI_ENVARS = """
apiVersion: v1
kind: Pod
metadata:
  name: dapi-envars-fieldref
spec:
  containers:
    - name: test-container
      image: registry.k8s.io/busybox:1.27.2
      command: [ "sh", "-c"]
      args:
      - while true; do
          echo -en '\\n';
          printenv MY_NODE_NAME MY_POD_NAME MY_POD_NAMESPACE;
          printenv MY_POD_IP MY_POD_SERVICE_ACCOUNT;
          sleep 10;
        done;
      env:
        - name: MY_NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: MY_POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: MY_POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: MY_POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        - name: MY_POD_SERVICE_ACCOUNT
          valueFrom:
            fieldRef:
              fieldPath: spec.serviceAccountName
  restartPolicy: Never
"""

DAPI_RESOURCES_ENV = """
apiVersion: v1
kind: Pod
metadata:
  name: dapi-envars-resourcefieldref
spec:
  containers:
    - name: test-container
      image: registry.k8s.io/busybox:1.27.2
      command: [ "sh", "-c"]
      args:
      - while true; do
          echo -en '\\n';
          printenv MY_CPU_REQUEST MY_CPU_LIMIT;
          printenv MY_MEM_REQUEST MY_MEM_LIMIT;
          sleep 10;
        done;
      resources:
        requests:
          memory: "32Mi"
          cpu: "125m"
        limits:
          memory: "64Mi"
          cpu: "250m"
      env:
        - name: MY_CPU_REQUEST
          valueFrom:
            resourceFieldRef:
              containerName: test-container
              resource: requests.cpu
        - name: MY_CPU_LIMIT
          valueFrom:
            resourceFieldRef:
              containerName: test-container
              resource: limits.cpu
        - name: MY_MEM_REQUEST
          valueFrom:
            resourceFieldRef:
              containerName: test-container
              resource: requests.memory
        - name: MY_MEM_LIMIT
          valueFrom:
            resourceFieldRef:
              containerName: test-container
              resource: limits.memory
  restartPolicy: Never
"""

DAPI_VOLUME = """
apiVersion: v1
kind: Pod
metadata:
  name: kubernetes-downwardapi-volume-example
  labels:
    zone: us-est-coast
    cluster: test-cluster1
    rack: rack-22
  annotations:
    build: two
    builder: john-doe
spec:
  containers:
    - name: client-container
      image: registry.k8s.io/busybox
      command: ["sh", "-c"]
      args:
      - while true; do
          if [[ -e /etc/podinfo/labels ]]; then
            echo -en '\\n\\n'; cat /etc/podinfo/labels; fi;
          if [[ -e /etc/podinfo/annotations ]]; then
            echo -en '\\n\\n'; cat /etc/podinfo/annotations; fi;
          sleep 5;
        done;
      volumeMounts:
        - name: podinfo
          mountPath: /etc/podinfo
  volumes:
    - name: podinfo
      downwardAPI:
        items:
          - path: "labels"
            fieldRef:
              fieldPath: metadata.labels
          - path: "annotations"
            fieldRef:
              fieldPath: metadata.annotations
"""


def phase(lab, name: str) -> str:
    return lab.get("pods", name)["status"].get("phase", "")


def running(lab, name: str, timeout: float = 60) -> None:
    lab.wait(lambda: phase(lab, name) == "Running" and all(
        s.get("ready") for s in lab.get("pods", name)["status"].get("containerStatuses") or [{}]), timeout, name)


def logs(lab, name: str, *args: str) -> str:
    return lab.kubectl("logs", name, *args, check=False).stdout


def test_two_containers_share_an_empty_dir(netlab_lab):
    lab = netlab_lab
    lab.apply(TWO_CONTAINERS)
    lab.wait(lambda: (st := {s["name"]: s for s in lab.get("pods", "two-containers")["status"].get(
        "containerStatuses") or []}) and st["debian-container"]["state"].get("terminated") and
        st["nginx-container"].get("ready"), 60, "the debian container done, nginx serving")
    out = lab.kubectl("exec", "two-containers", "-c", "nginx-container", "--", "curl", "-s", "localhost").stdout
    assert out == "Hello from the debian container\n"
    lab.kubectl("delete", "pod", "two-containers", "--grace-period=0", "--force")


def test_init_containers_wait_for_their_services(netlab_lab):
    lab = netlab_lab
    lab.apply(MYAPP)
    lab.wait(lambda: "waiting for myservice" in logs(lab, "myapp-pod", "-c", "init-myservice"), 60, "init waiting")
    assert phase(lab, "myapp-pod") == "Pending"
    assert "Init:0/2" in lab.kubectl("get", "pod", "myapp-pod").stdout
    lab.apply(MYAPP_SERVICES)
    running(lab, "myapp-pod", 90)
    assert logs(lab, "myapp-pod", "-c", "myapp-container") == "The app is running!\n"
    lab.kubectl("delete", "pod", "myapp-pod", "--grace-period=0", "--force")
    lab.kubectl("delete", "service", "myservice", "mydb")


def test_a_secret_as_files_and_as_an_environment_variable(netlab_lab):
    lab = netlab_lab
    lab.apply(SECRET)
    lab.apply(SECRET_POD)
    running(lab, "secret-test-pod")

    def sh(pod: str, script: str) -> str:
        return lab.kubectl("exec", pod, "--", "/bin/sh", "-c", script).stdout
    assert sh("secret-test-pod", "cd /etc/secret-volume; ls").split() == ["password", "username"]
    assert sh("secret-test-pod", 'cd /etc/secret-volume; echo "$( cat username )"; echo "$( cat password )"') == \
        "my-app\n39528$vdg7Jb\n"
    listing = sh("secret-test-pod", "ls -la /etc/secret-volume")
    assert "..data -> ..20" in listing and "username -> ..data/username" in listing, listing
    assert sh("secret-test-pod", "stat -L -c %a /etc/secret-volume/username") == "644\n"
    out = lab.kubectl("exec", "secret-test-pod", "--", "touch", "/etc/secret-volume/x", check=False)
    assert out.returncode != 0 and "Read-only file system" in out.stderr
    # the Secret's update reaches the running pod, all files at once
    lab.kubectl("patch", "secret", "test-secret", "-p", json.dumps({"data": {"username": base64.b64encode(
        b"my-new-app").decode()}}))
    lab.wait(lambda: sh("secret-test-pod", "cat /etc/secret-volume/username") == "my-new-app", 30, "the update")
    # as an environment variable
    lab.kubectl("create", "secret", "generic", "backend-user", "--from-literal=backend-username=backend-admin")
    lab.apply(SECRET_ENV_POD)
    running(lab, "env-single-secret")
    assert sh("env-single-secret", "echo $SECRET_USERNAME") == "backend-admin\n"
    lab.kubectl("delete", "pod", "secret-test-pod", "env-single-secret", "--grace-period=0", "--force")
    lab.kubectl("delete", "secret", "test-secret", "backend-user")


def test_a_projected_volume_of_two_secrets(netlab_lab, tmp_path):
    lab = netlab_lab
    (tmp_path / "username.txt").write_text("admin")
    (tmp_path / "password.txt").write_text("1f2d1e2e67df")
    lab.kubectl("create", "secret", "generic", "user", f"--from-file={tmp_path / 'username.txt'}")
    lab.kubectl("create", "secret", "generic", "pass", f"--from-file={tmp_path / 'password.txt'}")
    lab.apply(PROJECTED)
    running(lab, "test-projected-volume")
    assert lab.kubectl("exec", "test-projected-volume", "--", "ls", "/projected-volume/").stdout.split() == \
        ["password.txt", "username.txt"]
    assert lab.kubectl("exec", "test-projected-volume", "--", "cat", "/projected-volume/username.txt").stdout == "admin"
    lab.kubectl("delete", "pod", "test-projected-volume", "--grace-period=0", "--force")
    lab.kubectl("delete", "secret", "user", "pass")


def test_the_downward_api_as_environment_variables_and_files(netlab_lab):
    lab = netlab_lab
    lab.apply(DAPI_ENVARS)
    lab.apply(DAPI_RESOURCES_ENV)
    p = lab.wait(lambda: (p := lab.get("pods", "dapi-envars-fieldref"))["status"].get("podIP") and
                 "default" in logs(lab, "dapi-envars-fieldref") and p, 60, "the env printed")
    lines = [x for x in logs(lab, "dapi-envars-fieldref").splitlines() if x.strip() and x != "-en "]
    assert lines[:5] == [p["spec"]["nodeName"], "dapi-envars-fieldref", "default", p["status"]["podIP"], "default"]
    lab.wait(lambda: "67108864" in logs(lab, "dapi-envars-resourcefieldref"), 60, "the resources printed")
    lines = [x for x in logs(lab, "dapi-envars-resourcefieldref").splitlines() if x.strip() and x != "-en "]
    assert lines[:4] == ["1", "1", "33554432", "67108864"]
    # as files (the host's sh has no [[, so the example's loop prints nothing: read the files it would)
    lab.apply(DAPI_VOLUME)
    running(lab, "kubernetes-downwardapi-volume-example")

    def cat(path: str) -> str:
        return lab.kubectl("exec", "kubernetes-downwardapi-volume-example", "--", "cat", path).stdout
    assert cat("/etc/podinfo/labels") == 'cluster="test-cluster1"\nrack="rack-22"\nzone="us-est-coast"'
    assert cat("/etc/podinfo/annotations").startswith('build="two"\nbuilder="john-doe"')
    lab.kubectl("label", "pod", "kubernetes-downwardapi-volume-example", "rack=rack-23", "--overwrite")
    lab.wait(lambda: 'rack="rack-23"' in cat("/etc/podinfo/labels"), 30, "the new label in the file")
    lab.kubectl("delete", "pod", "dapi-envars-fieldref", "dapi-envars-resourcefieldref",
                "kubernetes-downwardapi-volume-example", "--grace-period=0", "--force")


def test_configmap_items_modes_subpaths_and_updates(netlab_lab):
    lab = netlab_lab
    lab.kubectl("create", "configmap", "vol-conf", "--from-literal=game.properties=lives=3",
                "--from-literal=ui.properties=color=red")
    lab.apply("""
apiVersion: v1
kind: Pod
metadata: {name: vol-conf}
spec:
  containers:
  - name: c
    image: busybox
    command: [sleep, "3600"]
    volumeMounts:
    - {name: conf, mountPath: /config}
    - {name: items, mountPath: /opt/app/items}
    - {name: conf, mountPath: /opt/app/ui.properties, subPath: ui.properties}
  volumes:
  - name: conf
    configMap: {name: vol-conf, defaultMode: 0400}
  - name: items
    configMap:
      name: vol-conf
      items: [{key: game.properties, path: nested/game, mode: 0600}]
""")
    running(lab, "vol-conf")

    def sh(script: str) -> str:
        return lab.kubectl("exec", "vol-conf", "--", "sh", "-c", script).stdout
    assert sh("ls /config").split() == ["game.properties", "ui.properties"]
    assert sh("stat -L -c %a /config/game.properties /opt/app/items/nested/game").split() == ["400", "600"]
    assert sh("ls /opt/app/items") == "nested\n" and sh("cat /opt/app/ui.properties") == "color=red"
    lab.kubectl("patch", "configmap", "vol-conf", "-p", json.dumps({"data": {"ui.properties": "color=blue"}}))
    lab.wait(lambda: sh("cat /config/ui.properties") == "color=blue", 30, "the update in the volume")
    assert sh("cat /opt/app/ui.properties") == "color=red", "a subPath mount keeps its file, as upstream"
    lab.kubectl("delete", "pod", "vol-conf", "--grace-period=0", "--force")
    lab.kubectl("delete", "configmap", "vol-conf")


def test_memory_empty_dir_and_host_path_types(netlab_lab, tmp_path):
    lab = netlab_lab
    lab.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: vol-mem}}
spec:
  containers:
  - name: writer
    image: busybox
    command: [sh, -c, "echo written > /cache/note; sleep 3600"]
    volumeMounts: [{{name: cache, mountPath: /cache}}, {{name: made, mountPath: /host/made}}]
  - name: reader
    image: busybox
    command: [sleep, "3600"]
    volumeMounts: [{{name: cache, mountPath: /var/cache/shared}}]
  volumes:
  - name: cache
    emptyDir: {{medium: Memory, sizeLimit: 16Mi}}
  - name: made
    hostPath: {{path: {tmp_path / 'made'}, type: DirectoryOrCreate}}
""")
    running(lab, "vol-mem")
    lab.wait(lambda: lab.kubectl("exec", "vol-mem", "-c", "reader", "--", "cat", "/var/cache/shared/note",
                                 check=False).stdout == "written\n", 20, "the note seen by the other container")
    df = lab.kubectl("exec", "vol-mem", "-c", "reader", "--", "df", "-k", "/var/cache/shared").stdout.splitlines()[1]
    assert df.split()[0] == "tmpfs" and df.split()[1] == str(16 * 1024), df
    assert (tmp_path / "made").is_dir()
    lab.kubectl("exec", "vol-mem", "-c", "writer", "--", "touch", "/host/made/from-pod")
    assert (tmp_path / "made" / "from-pod").exists(), "a hostPath is the host's"
    lab.kubectl("delete", "pod", "vol-mem", "--grace-period=0", "--force")
    # a hostPath of the wrong type: the pod waits, with upstream's FailedMount event
    lab.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: vol-wrong}}
spec:
  containers:
  - {{name: c, image: busybox, command: [sleep, "3600"], volumeMounts: [{{name: h, mountPath: /h}}]}}
  volumes:
  - {{name: h, hostPath: {{path: {tmp_path / 'missing'}, type: Directory}}}}
""")
    message = (f'MountVolume.SetUp failed for volume "h" : hostPath type check failed: {tmp_path / "missing"} '
               "is not a directory")
    lab.wait(lambda: any(e["reason"] == "FailedMount" and e.get("message") == message for e in lab.items("events")
                         if e["involvedObject"].get("name") == "vol-wrong"), 30, "FailedMount")
    assert phase(lab, "vol-wrong") == "Pending"
    lab.kubectl("delete", "pod", "vol-wrong", "--grace-period=0", "--force")
