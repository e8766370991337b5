"""Protobuf request bodies (what kubectl 1.32+'s typed clients send) read into JSON objects:
the envelope, nested messages, maps, bytes, int-or-string, Quantity and Time, embedded structs."""

from __future__ import annotations

import pytest

from netlab.control.apiserver import protobuf
from netlab.control.apiserver.openapiv2pb import _bytes, _str, _varint


def varint_field(n: int, v: int) -> bytes:
    return _varint(n << 3) + _varint(v)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return protobuf.MAGIC + _bytes(1, _str(1, api_version) + _str(2, kind)) + _bytes(2, raw)


def meta(name: str, labels: dict[str, str] | None = None) -> bytes:
    out = _str(1, name) + varint_field(7, 0)  # generation 0, as Go writes it
    for k, v in (labels or {}).items():
        out += _bytes(11, _str(1, k) + _str(2, v))
    return _bytes(1, out + _bytes(8, b""))  # creationTimestamp: the zero Time


def test_service_with_int_or_string_ports():
    port = _str(1, "http") + _str(2, "TCP") + varint_field(3, 80) + _bytes(4, varint_field(1, 1) + _str(3, "web"))
    port2 = _str(1, "metrics") + varint_field(3, 9100) + _bytes(4, varint_field(1, 0) + varint_field(2, 9100))
    spec = _bytes(1, port) + _bytes(1, port2) + _bytes(2, _str(1, "app") + _str(2, "web"))
    obj = protobuf.decode(envelope("v1", "Service", meta("web", {"app": "web"}) + _bytes(2, spec)))
    assert obj == {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
                   "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web"},
                                      {"name": "metrics", "port": 9100, "targetPort": 9100}],
                            "selector": {"app": "web"}}}


def test_secret_bytes_quantity_time_and_an_embedded_struct():
    secret = protobuf.decode(envelope("v1", "Secret", meta("s") + _bytes(2, _str(1, "k") + _bytes(2, b"\x00\xff"))))
    assert secret["data"] == {"k": "AP8="}
    # a Volume embeds its VolumeSource: configMap is a field of the volume in JSON
    volume = _str(1, "cfg") + _bytes(2, _bytes(19, _bytes(1, _str(1, "my-config"))))
    limits = _bytes(1, _str(1, "cpu") + _bytes(2, _str(1, "500m")))
    container = _str(1, "c") + _str(2, "nginx") + _bytes(8, limits)
    pod = protobuf.decode(envelope("v1", "Pod", meta("p") + _bytes(2, _bytes(1, volume) + _bytes(2, container))))
    assert pod["spec"]["volumes"] == [{"name": "cfg", "configMap": {"name": "my-config"}}]
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m"}}
    assert "generation" not in pod["metadata"] and "creationTimestamp" not in pod["metadata"]
    cond = _str(1, "Ready") + _str(2, "True") + _bytes(4, varint_field(1, 1767225600))
    status = protobuf.decode(envelope("v1", "Pod", meta("p") + _bytes(3, _bytes(2, cond))))
    assert status["status"]["conditions"] == [{"type": "Ready", "status": "True",
                                               "lastTransitionTime": "2026-01-01T00:00:00Z"}]


def test_not_an_envelope_or_an_unknown_kind():
    with pytest.raises(protobuf.ProtobufError, match="magic number"):
        protobuf.decode(b"{}")
    with pytest.raises(protobuf.ProtobufError, match="no protobuf message for example.com/v1, Kind=Thing"):
        protobuf.decode(envelope("example.com/v1", "Thing", b""))
