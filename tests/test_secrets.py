"""v1 Secrets with upstream's rules, through the API (against SQLite and a real etcd) and kubectl
(`create secret generic|tls|docker-registry`, `get secrets`, `apply --validate=strict`)."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.apikit import ControlPlane, etcd

SECRETS = "/api/v1/namespaces/default/secrets"
MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cp(request):
    if request.param == "etcd":
        with etcd() as url, ControlPlane("nltsec-etcd", store=url) as plane:
            yield plane
    else:
        with ControlPlane("nltsec-sqlite") as plane:
            yield plane


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def secret(name: str, **fields) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, **fields.pop("metadata", {})}, **fields}


def causes(body: dict) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in body["details"]["causes"]]


@pytest.mark.parametrize("fields, expected", [
    ({"type": "kubernetes.io/tls", "data": {"tls.crt": b64("c")}}, [("data[tls.key]", "Required value")]),
    ({"type": "kubernetes.io/tls"}, [("data[tls.crt]", "Required value"), ("data[tls.key]", "Required value")]),
    ({"type": "kubernetes.io/dockerconfigjson"}, [("data[.dockerconfigjson]", "Required value")]),
    ({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("{")}},
     [("data[.dockerconfigjson]", 'Invalid value: "<secret contents redacted>": unexpected end of JSON input')]),
    ({"type": "kubernetes.io/dockercfg", "data": {".dockercfg": b64("[]")}},
     [("data[.dockercfg]", 'Invalid value: "<secret contents redacted>": json: cannot unmarshal array into Go '
                           "value of type map[string]interface {}")]),
    ({"type": "kubernetes.io/service-account-token"},
     [("metadata.annotations[kubernetes.io/service-account.name]", "Required value")]),
    ({"type": "kubernetes.io/basic-auth"}, [("data[username]", "Required value"), ("data[password]", "Required value")]),
    ({"type": "kubernetes.io/ssh-auth", "data": {"ssh-privatekey": ""}}, [("data[ssh-privatekey]", "Required value")]),
    ({"data": {"a b": b64("x")}}, [("data[a b]", "Invalid value: \"a b\": a valid config key must consist of "
                                   "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or "
                                   "'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")]),
    ({"stringData": {"big": "x" * (1024 * 1024 + 1)}}, [("data", "Too long: must have at most 1048576 bytes")]),
])
def test_each_rule_is_a_422_naming_the_field(cp, fields, expected):
    status, body = cp.api("POST", SECRETS, secret("bad", **fields))
    assert status == 422 and body["reason"] == "Invalid", body
    assert causes(body) == expected
    assert body["message"].startswith('Secret "bad" is invalid: ')
    assert cp.api("GET", f"{SECRETS}/bad")[0] == 404


def test_data_must_be_base64(cp):
    status, body = cp.api("POST", SECRETS, secret("b64", data={"k": "not base64!"}))
    assert status == 400 and body["message"] == ('Secret in version "v1" cannot be handled as a Secret: '
                                                 "illegal base64 data at input byte 3")
    status, body = cp.api("POST", SECRETS, secret("b64", data={"k": "aGk"}))
    assert status == 400 and body["message"].endswith("illegal base64 data at input byte 0")


def test_types_that_validate_and_the_default(cp):
    for name, fields in [("opaque", {}), ("token", {"type": "bootstrap.kubernetes.io/token",
                                                     "stringData": {"token-id": "abcdef"}}),
                         ("sa", {"type": "kubernetes.io/service-account-token",
                                 "metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}}}),
                         ("basic", {"type": "kubernetes.io/basic-auth", "stringData": {"password": ""}}),
                         ("docker", {"type": "kubernetes.io/dockerconfigjson",
                                     "stringData": {".dockerconfigjson": '{"auths": {}}'}})]:
        status, body = cp.api("POST", SECRETS, secret(name, **fields))
        assert status == 201, body
    assert cp.api("GET", f"{SECRETS}/opaque")[1]["type"] == "Opaque"
    for name in ("opaque", "token", "sa", "basic", "docker"):
        cp.api("DELETE", f"{SECRETS}/{name}")


def test_string_data_is_merged_into_data_and_dropped(cp):
    status, body = cp.api("POST", SECRETS, secret("merge", data={"a": b64("1"), "b": b64("2")},
                                                  stringData={"a": "one", "c": "three"}))
    assert status == 201
    stored = cp.api("GET", f"{SECRETS}/merge")[1]
    assert stored["data"] == {"a": b64("one"), "b": b64("2"), "c": b64("three")} and "stringData" not in stored
    assert body["data"] == stored["data"] and "stringData" not in body
    status, body = cp.api("PATCH", f"{SECRETS}/merge", {"stringData": {"b": "two"}}, MERGE)
    assert status == 200 and body["data"]["b"] == b64("two") and "stringData" not in body
    cp.api("DELETE", f"{SECRETS}/merge")


def test_type_and_immutable_data_cannot_change(cp):
    status, body = cp.api("POST", SECRETS, secret("fixed", data={"a": b64("1")}))
    status, body = cp.api("PATCH", f"{SECRETS}/fixed", {"type": "kubernetes.io/basic-auth"}, MERGE)
    assert status == 422 and causes(body) == [("type", 'Invalid value: "kubernetes.io/basic-auth": field is immutable'),
                                              ("data[username]", "Required value"), ("data[password]", "Required value")]
    status, _ = cp.api("PATCH", f"{SECRETS}/fixed", {"immutable": True}, MERGE)
    assert status == 200
    forbidden = "Forbidden: field is immutable when `immutable` is set"
    for patch, field in [({"data": {"a": b64("2")}}, "data"), ({"stringData": {"new": "x"}}, "data"),
                         ({"immutable": False}, "immutable"), ({"immutable": None}, "immutable")]:
        status, body = cp.api("PATCH", f"{SECRETS}/fixed", patch, MERGE)
        assert status == 422 and causes(body) == [(field, forbidden)], patch
    status, _ = cp.api("PATCH", f"{SECRETS}/fixed", {"metadata": {"labels": {"tier": "a"}}}, MERGE)
    assert status == 200
    assert cp.api("GET", f"{SECRETS}/fixed")[1]["data"] == {"a": b64("1")}
    cp.api("DELETE", f"{SECRETS}/fixed")


def self_signed(tmp_path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nlt.example")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    crt, pem = tmp_path / "tls.crt", tmp_path / "tls.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return str(crt), str(pem)


def test_kubectl_creates_and_lists_secrets(cp, tmp_path):
    out = cp.kubectl("create", "secret", "generic", "app", "--from-literal=user=admin",
                     "--from-literal=password=s3cret").stdout
    assert "secret/app created" in out
    crt, key = self_signed(tmp_path)
    assert "secret/web-tls created" in cp.kubectl("create", "secret", "tls", "web-tls", f"--cert={crt}",
                                                  f"--key={key}").stdout
    cp.kubectl("create", "secret", "docker-registry", "pull", "--docker-server=registry.example",
               "--docker-username=u", "--docker-password=p")
    lines = cp.kubectl("get", "secrets").stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    rows = {ln.split()[0]: ln.split()[1:3] for ln in lines[1:]}
    assert rows == {"app": ["Opaque", "2"], "web-tls": ["kubernetes.io/tls", "2"],
                    "pull": ["kubernetes.io/dockerconfigjson", "1"]}
    tls = json.loads(cp.kubectl("get", "secret", "web-tls", "-o", "json").stdout)
    assert base64.b64decode(tls["data"]["tls.crt"]) == open(crt, "rb").read()
    assert cp.kubectl("get", "secret", "app", "-o", "jsonpath={.data.user}").stdout == b64("admin")
    manifest = json.dumps(secret("applied", data={"k": b64("v")}))
    assert "secret/applied created" in cp.kubectl("apply", "--validate=strict", "-f", "-", input=manifest).stdout
    assert "secret/applied unchanged" in cp.kubectl("apply", "--validate=strict", "-f", "-", input=manifest).stdout
    err = cp.kubectl("apply", "--validate=strict", "-f", "-", input=json.dumps(secret("typo", dta={})),
                     check=False).stderr
    assert 'unknown field "dta"' in err
    assert "secrets" in cp.kubectl("api-resources", "--no-headers").stdout
    cp.kubectl("delete", "secret", "app", "web-tls", "pull", "applied")
