"""`kubectl create secret tls`, then a pod reads the certificate from a mounted Secret volume and
from an environment variable, as the Secret docs' TLS example does."""

from __future__ import annotations

import subprocess

import pytest

from tests.test_kubelet_volumes import running

pytestmark = pytest.mark.lab

POD = """
apiVersion: v1
kind: Pod
metadata: {name: nlt-tls-reader}
spec:
  containers:
  - name: c
    image: busybox
    command: [sleep, infinity]
    env:
    - name: TLS_CERT
      valueFrom: {secretKeyRef: {name: nlt-tls, key: tls.crt}}
    volumeMounts: [{name: tls, mountPath: /etc/tls, readOnly: true}]
  volumes:
  - name: tls
    secret: {secretName: nlt-tls}
"""


def test_a_tls_secret_in_a_volume_and_an_env_var(netlab_lab, tmp_path):
    lab = netlab_lab
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=nlt.example",
                    "-keyout", str(tmp_path / "tls.key"), "-out", str(tmp_path / "tls.crt")], check=True,
                   capture_output=True)
    cert = (tmp_path / "tls.crt").read_text()
    out = lab.kubectl("create", "secret", "tls", "nlt-tls", "--cert", str(tmp_path / "tls.crt"),
                      "--key", str(tmp_path / "tls.key")).stdout
    try:
        assert out.strip() == "secret/nlt-tls created"
        assert lab.kubectl("get", "secret", "nlt-tls", "--no-headers").stdout.split()[:3] == \
            ["nlt-tls", "kubernetes.io/tls", "2"]
        lab.apply(POD)
        running(lab, "nlt-tls-reader")

        def sh(script: str) -> str:
            return lab.kubectl("exec", "nlt-tls-reader", "--", "/bin/sh", "-c", script).stdout
        assert sh("ls /etc/tls").split() == ["tls.crt", "tls.key"]
        assert sh("cat /etc/tls/tls.crt") == cert
        assert sh('printf "%s" "$TLS_CERT"') == cert
        subject = sh("openssl x509 -noout -subject -in /etc/tls/tls.crt")
        assert "CN = nlt.example" in subject or "CN=nlt.example" in subject
    finally:
        lab.kubectl("delete", "pod", "nlt-tls-reader", "--grace-period=0", "--force", check=False)
        lab.kubectl("delete", "secret", "nlt-tls", check=False)
