"""A CRD's structural schema applied to custom resources (pruning, defaulting, validation with
upstream's messages), a CRD's own validation, and the JSONPath of printer columns: without a
server."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from netlab.control.apiserver import crdvalidation, jsonpath, structural
from netlab.control.apiserver.customresources import cell, rest_friendly, version_order

CRONTAB = Path(__file__).parent / "data" / "crontab"

SCHEMA = yaml.safe_load(r"""
type: object
properties:
  spec:
    type: object
    required: [image]
    properties:
      cronSpec: {type: string, pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$', default: "5 0 * * *"}
      image: {type: string, minLength: 2, maxLength: 20}
      replicas: {type: integer, minimum: 1, maximum: 10, exclusiveMaximum: true, default: 1}
      ratio: {type: number, multipleOf: 0.5}
      port: {x-kubernetes-int-or-string: true}
      color: {type: string, enum: [red, blue]}
      when: {type: string, format: date-time}
      addr: {type: string, format: ipv4}
      nick: {type: string, nullable: true}
      tags: {type: array, maxItems: 2, x-kubernetes-list-type: set, items: {type: string}}
      ports:
        type: array
        minItems: 1
        x-kubernetes-list-type: map
        x-kubernetes-list-map-keys: [name]
        items: {type: object, required: [name], properties: {name: {type: string}, port: {type: integer}}}
      labels: {type: object, maxProperties: 1, additionalProperties: {type: string}}
      json:
        x-kubernetes-preserve-unknown-fields: true
        type: object
        properties:
          spec: {type: object, properties: {foo: {type: string}, bar: {type: string}}}
      template: {type: object, x-kubernetes-embedded-resource: true, x-kubernetes-preserve-unknown-fields: true}
      either:
        type: object
        properties: {a: {type: string}, b: {type: string}}
        oneOf: [{required: [a]}, {required: [b]}]
  status: {type: object, properties: {replicas: {type: integer}}}
""")


def messages(obj: dict) -> list[str]:
    return [str(e) for e in structural.Validator(SCHEMA).errors(obj)]


def test_pruning_reports_the_unknown_fields_and_keeps_what_is_preserved():
    obj = {"apiVersion": "stable.example.com/v1", "kind": "CronTab", "metadata": {"name": "x"},
           "spec": {"image": "i", "someRandomField": 42, "ports": [{"name": "a", "extra": 1}],
                    "json": {"spec": {"foo": "abc", "bar": "def", "something": "x"}, "status": {"something": "x"}},
                    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"any": 1}}},
           "top": 1}
    assert structural.prune(obj, SCHEMA) == ["spec.json.spec.something", "spec.ports[0].extra", "spec.someRandomField",
                                             "top"]
    # the documentation's example of x-kubernetes-preserve-unknown-fields
    assert obj["spec"]["json"] == {"spec": {"foo": "abc", "bar": "def"}, "status": {"something": "x"}}
    assert obj["spec"]["template"]["spec"] == {"any": 1} and obj["metadata"] == {"name": "x"}


def test_defaulting_and_nulls_as_the_documentation_describes():
    s = yaml.safe_load("""
type: object
properties:
  spec:
    type: object
    properties:
      foo: {type: string, nullable: false, default: "default"}
      bar: {type: string, nullable: true}
      baz: {type: string}
""")
    obj = {"spec": {"foo": None, "bar": None, "baz": None}}
    structural.prune_nulls(obj, s)
    structural.default(obj, s)
    assert obj == {"spec": {"foo": "default", "bar": None}}
    obj = {"spec": {"image": "x"}}
    structural.default(obj, SCHEMA)
    assert obj["spec"] == {"image": "x", "cronSpec": "5 0 * * *", "replicas": 1}


def test_validation_messages_are_upstreams():
    good = {"spec": {"image": "img", "cronSpec": "* * * * */5", "replicas": 3, "port": "http", "nick": None,
                     "ports": [{"name": "a"}], "either": {"a": "x"}, "when": "2024-01-02T03:04:05Z",
                     "addr": "10.0.0.1"}}
    assert messages(good) == []
    bad = copy.deepcopy(good)
    bad["spec"].update(image="i", cronSpec="* * * *", replicas=10, ratio=0.7, port=True, color="green",
                       when="yesterday", addr="1.2.3", tags=["a", "b", "a"], labels={"a": "1", "b": "2"}, ports=[],
                       nick=5)
    assert messages(bad) == [
        'spec.addr: Invalid value: "1.2.3": spec.addr in body must be of type ipv4: "1.2.3"',
        'spec.color: Unsupported value: "green": supported values: "red", "blue"',
        "spec.cronSpec: Invalid value: \"* * * *\": spec.cronSpec in body should match "
        "'^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$'",
        'spec.image: Invalid value: "i": spec.image in body should be at least 2 chars long',
        "spec.labels: Too many: 2: must have at most 1 items",
        'spec.nick: Invalid value: "integer": spec.nick in body must be of type string: "integer"',
        'spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"',
        "spec.ports: Invalid value: 0: spec.ports in body should have at least 1 items",
        "spec.ratio: Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5",
        "spec.replicas: Invalid value: 10: spec.replicas in body should be less than 10",
        "spec.tags: Too many: 3: must have at most 2 items",
        'spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday"']
    assert messages({"spec": {"image": "x" * 21, "replicas": "string"}}) == [
        "spec.image: Too long: may not be longer than 20",
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"']
    assert messages({"spec": {}}) == ["spec.image: Required value"]
    assert messages({"spec": {"image": "ab", "either": {}}}) == [
        '<nil>: Invalid value: "": "spec.either" must validate one and only one schema (oneOf). Found none valid',
        "spec.either.a: Required value"]
    assert messages({"spec": {"image": "ab", "replicas": 2.0}}) == []  # an integral number is an integer


def test_list_types_and_embedded_resources():
    obj = {"spec": {"tags": ["a", "b", "a", "a"], "ports": [{"name": "x"}, {"name": "y"}, {"name": "x", "port": 1}],
                    "template": {"kind": "Pod", "metadata": {"name": "a/b", "labels": {"k": "bad value"}}}}}
    assert [str(e) for e in structural.list_errors(obj, SCHEMA)] == [
        'spec.tags[2]: Duplicate value: "a"', 'spec.ports[2]: Duplicate value: map[string]interface {}{"name":"x"}']
    errs = [str(e) for e in structural.embedded_errors(obj, SCHEMA)]
    assert errs[:2] == ["spec.template.apiVersion: Required value: must not be empty",
                        "spec.template.metadata.name: Invalid value: \"a/b\": may not contain '/'"]
    assert errs[2].startswith('spec.template.metadata.labels: Invalid value: "bad value": a valid label must be')


def test_structural_schema_rules_of_the_documentation():
    """Non-structural example 3 of the documentation, and each violation it lists."""
    s = yaml.safe_load("""
properties:
  foo:
    pattern: "abc"
  metadata:
    type: object
    properties:
      name:
        type: string
        pattern: "^a"
      finalizers:
        type: array
        items:
          type: string
          pattern: "my-finalizer"
anyOf:
- properties:
    bar:
      type: integer
      minimum: 42
  required: ["bar"]
  description: "foo bar object"
""")
    got = sorted(str(e) for e in crdvalidation.structural_errors(s, "spec.validation.openAPIV3Schema"))
    at = "spec.validation.openAPIV3Schema"
    assert got == sorted([
        f"{at}.anyOf[0].description: Forbidden: must be empty to be structural",
        f"{at}.anyOf[0].properties[bar].type: Forbidden: must be empty to be structural",
        f"{at}.properties[bar]: Required value: because it is defined in {at}.anyOf[0].properties[bar]",
        f"{at}.properties[foo].type: Required value: must not be empty for specified object fields",
        f"{at}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but "
        "metadata is implicitly specified",
        f"{at}.type: Required value: must not be empty at the root"])
    fixed = yaml.safe_load("""
type: object
description: "foo bar object"
properties:
  foo: {type: string, pattern: "abc"}
  bar: {type: integer}
  metadata: {type: object, properties: {name: {type: string, pattern: "^a"}}}
anyOf:
- properties:
    bar: {minimum: 42}
  required: ["bar"]
""")
    assert crdvalidation.structural_errors(fixed, at) == []
    assert crdvalidation.structural_errors({"type": "object", "properties": {"port": {
        "x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}}}, at) == []


def crd(mutate=None) -> dict:
    c = yaml.safe_load((CRONTAB / "subresources.yaml").read_text())
    c["status"] = {"storedVersions": ["v1"]}
    c["spec"]["names"]["listKind"] = "CronTabList"  # as the CRD's defaults set it
    if mutate:
        mutate(c)
    return c


def errors(c: dict) -> list[str]:
    return [str(e) for e in crdvalidation.validate(c)]


def test_crd_validation():
    assert errors(crd()) == []

    def schema(c):
        return c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    at = "spec.validation.openAPIV3Schema"
    assert errors(crd(lambda c: c["spec"].update(group="example"))) == [
        'metadata.name: Invalid value: "crontabs.stable.example.com": must be spec.names.plural+"."+spec.group',
        'spec.group: Invalid value: "example": should be a domain with at least one dot']
    assert errors(crd(lambda c: schema(c)["properties"]["spec"]["properties"]["replicas"].update(
        type="int", uniqueItems=True))) == [
        f'{at}.properties[spec].properties[replicas].type: Unsupported value: "int": supported values: "array", '
        '"boolean", "integer", "number", "object", "string"',
        f"{at}.properties[spec].properties[replicas].uniqueItems: Forbidden: uniqueItems cannot be set to true since "
        "the runtime complexity becomes quadratic"]
    assert errors(crd(lambda c: schema(c).update(anyOf=[{"required": ["spec"]}]))) == [
        f"{at}: Invalid value: apiextensions.JSONSchemaProps{{...}}: only [Description Type Format Title Maximum "
        "ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems "
        "MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are "
        "allowed at the root of the schema if the status subresource is enabled"]
    assert errors(crd(lambda c: schema(c)["properties"].update(metadata={"type": "object", "default": {}}))) == [
        f"{at}.properties[metadata].default: Forbidden: must not be set in top-level metadata"]
    assert errors(crd(lambda c: schema(c)["properties"].update(items={"type": "array", "x-kubernetes-list-type": "map",
                                                                      "items": {"type": "object", "properties": {
                                                                          "name": {"type": "string"}}}}))) == [
        f"{at}.properties[items].x-kubernetes-list-map-keys: Required value: must not be empty if "
        "x-kubernetes-list-type is map"]
    assert errors(crd(lambda c: c["spec"]["versions"][0]["subresources"]["scale"].update(
        specReplicasPath=".status.replicas", statusReplicasPath="status.replicas"))) == [
        'spec.subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec',
        'spec.subresources.scale.statusReplicasPath: Invalid value: "status.replicas": must be a simple json path '
        "starting with ."]
    assert errors(crd(lambda c: c["spec"]["versions"][0].update(additionalPrinterColumns=[
        {"name": "X", "type": "text", "jsonPath": ".spec.x"}]))) == [
        'spec.additionalPrinterColumns[0].type: Invalid value: "text": must be one of '
        "boolean,date,integer,number,string"]
    two = crd(lambda c: c["spec"]["versions"].append(dict(copy.deepcopy(c["spec"]["versions"][0]), name="v1beta1",
                                                          storage=False, schema={})))
    assert errors(two) == ["spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required"]
    old = crd(lambda c: c["status"].update(conditions=[{"type": "Established", "status": "True"}]))
    new = crd(lambda c: c["spec"].update(scope="Cluster"))
    assert [str(e) for e in crdvalidation.validate(new, old)] == [
        'spec.scope: Invalid value: "Cluster": field is immutable']


def test_printer_column_jsonpath():
    obj = {"spec": {"hostnames": ["a", "b"], "n": 3, "ok": True},
           "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Accepted", "status": "True"}]}}

    def find(path):
        return jsonpath.find(jsonpath.parse(path), obj)
    assert find('.status.conditions[?(@.type=="Accepted")].status') == ["True"]
    assert find(".status.conditions[*].type") == ["Ready", "Accepted"]
    assert find(".status.conditions[-1].type") == ["Accepted"]
    assert find(".spec.missing") == [] and find("{.spec.n}") == [3]
    assert jsonpath.text(find(".spec.hostnames")[0]) == '["a","b"]' and jsonpath.text(True) == "true"
    assert cell("integer", 3.0) == 3 and cell("boolean", "yes") is None and cell("date", "nope") == "<invalid>"


def test_versions_and_names():
    assert sorted(["v1alpha1", "v1", "foo", "v2beta1", "v1beta2", "v1beta1", "v2"], key=version_order,
                  reverse=True) == ["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
    assert rest_friendly("stable.example.com", "v1", "CronTab") == "com.example.stable.v1.CronTab"
