"""ConfigMaps as upstream validates them, against SQLite and a real etcd."""

from __future__ import annotations

import base64

import pytest

from tests.apikit import ControlPlane, etcd

CMS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture(scope="module", params=["sqlite", "etcd"])
def cp(request):
    if request.param == "etcd":
        with etcd() as url, ControlPlane("nltcm-etcd", store=url) as plane:
            yield plane
    else:
        with ControlPlane("nltcm-sqlite") as plane:
            yield plane


def cm(name: str, **fields) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **fields}


def causes(body: dict) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in body["details"]["causes"]]


def test_keys_binary_data_and_size(cp):
    status, body = cp.api("POST", CMS, cm("keys", data={"a b": "x", "..x": "y"}))
    assert status == 422 and [f for f, _ in causes(body)] == ["data[a b]", "data[..x]"]
    assert "a valid config key must consist of alphanumeric characters, '-', '_' or '.'" in causes(body)[0][1]
    assert causes(body)[1][1] == "Invalid value: \"..x\": must not start with '..'"
    status, body = cp.api("POST", CMS, cm("bin", binaryData={"k": "not base64!"}))
    assert status == 400 and body["message"] == ('ConfigMap in version "v1" cannot be handled as a ConfigMap: '
                                                 "illegal base64 data at input byte 3")
    status, body = cp.api("POST", CMS, cm("both", data={"k": "v"}, binaryData={"k": "aGk="}))
    assert status == 422 and causes(body) == [("data[k]", 'Invalid value: "k": duplicate of key present in binaryData')]
    status, body = cp.api("POST", CMS, cm("big", data={"a": "x" * (512 * 1024)},
                                          binaryData={"b": base64.b64encode(b"y" * (512 * 1024 + 1)).decode()}))
    assert status == 422 and body["message"] == 'ConfigMap "big" is invalid: : Too long: must have at most 1048576 bytes'
    status, body = cp.api("POST", CMS, cm("ok", data={"a": "1"}, binaryData={"b": "aGk="}))
    assert status == 201 and body["binaryData"] == {"b": "aGk="}
    assert cp.kubectl("get", "cm", "ok", "--no-headers").stdout.split()[:2] == ["ok", "2"]
    cp.api("DELETE", f"{CMS}/ok")


def test_immutable(cp):
    status, body = cp.api("POST", CMS, cm("frozen", data={"a": "1"}, immutable=True))
    assert status == 201
    body["data"] = {"a": "2"}
    status, out = cp.api("PUT", f"{CMS}/frozen", body)
    assert status == 422 and causes(out) == [("data", "Forbidden: field is immutable when `immutable` is set")]
    status, out = cp.api("PATCH", f"{CMS}/frozen", {"immutable": False}, "application/merge-patch+json")
    assert status == 422 and causes(out) == [("immutable", "Forbidden: field is immutable when `immutable` is set")]
    status, _ = cp.api("PATCH", f"{CMS}/frozen", {"metadata": {"labels": {"a": "b"}}}, "application/merge-patch+json")
    assert status == 200
    cp.api("DELETE", f"{CMS}/frozen")
