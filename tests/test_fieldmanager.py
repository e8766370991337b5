"""Server-side apply's field sets, merges, conflicts and ownership (fieldmanager.py) against the
examples of upstream's server-side apply documentation, without a server."""

from __future__ import annotations

import pytest

from netlab.control.apiserver import fieldmanager as fm

DEPLOY = "io.k8s.api.apps.v1.Deployment"


def deployment(replicas=2, image="nginx", **extra):
    spec = {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}}}
    spec.update(extra)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": spec}


def owners(entries):
    return {(e["manager"], e["operation"]): fm.from_fields_v1(e["fieldsV1"]) for e in entries}


def test_field_set_is_the_documented_fields_v1():
    got = fm.to_fields_v1(fm.field_set(deployment(), DEPLOY))
    assert got == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:replicas": {}, "f:selector": {},  # a LabelSelector is atomic
                   "f:template": {"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:containers": {
                       'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}, "f:ports": {
                           'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}}}}}}


def test_apply_creates_then_an_update_takes_the_fields_it_changes():
    live, entries = fm.apply(None, deployment(), DEPLOY, "kubectl", False)
    live["metadata"]["managedFields"] = entries
    scaled = {**live, "spec": {**live["spec"], "replicas": 3}}
    fm.record_update(live, scaled, DEPLOY, "kubectl-scale", "scale")
    by = owners(scaled["metadata"]["managedFields"])
    assert by[("kubectl-scale", "Update")] == {("f:spec", "f:replicas")}
    assert ("f:spec", "f:replicas") not in by[("kubectl", "Apply")]
    entry = next(e for e in scaled["metadata"]["managedFields"] if e["manager"] == "kubectl-scale")
    assert entry["subresource"] == "scale" and entry["apiVersion"] == "apps/v1" and entry["fieldsType"] == "FieldsV1"


def test_a_changed_field_of_another_manager_conflicts_and_force_takes_it():
    live, entries = fm.apply(None, deployment(), DEPLOY, "kubectl", False)
    live["metadata"]["managedFields"] = entries
    with pytest.raises(fm.ApplyConflict) as e:
        fm.apply(live, deployment(replicas=5, image="nginx:2"), DEPLOY, "other", False)
    assert e.value.message == ('Apply failed with 2 conflicts: conflicts with "kubectl":\n'
                               "- .spec.replicas\n"
                               '- .spec.template.spec.containers[name="nginx"].image')
    new, entries = fm.apply(live, deployment(replicas=5, image="nginx:2"), DEPLOY, "other", True)
    assert new["spec"]["replicas"] == 5
    by = owners(entries)
    assert ("f:spec", "f:replicas") in by[("other", "Apply")] and ("f:spec", "f:replicas") not in by[("kubectl", "Apply")]


def test_same_value_is_shared_and_a_single_conflict_names_the_updater():
    live, entries = fm.apply(None, deployment(), DEPLOY, "a", False)
    live["metadata"]["managedFields"] = entries
    new, entries = fm.apply(live, deployment(), DEPLOY, "b", False)  # same values: co-owned
    by = owners(entries)
    assert ("f:spec", "f:replicas") in by[("a", "Apply")] and ("f:spec", "f:replicas") in by[("b", "Apply")]
    live = {**live, "metadata": {**live["metadata"], "managedFields": []}}
    fm.record_update(None, live, DEPLOY, "kubectl-edit")
    live["metadata"]["managedFields"] = live["metadata"]["managedFields"]
    with pytest.raises(fm.ApplyConflict) as e:
        fm.apply(live, deployment(replicas=9), DEPLOY, "b", False)
    assert e.value.message == 'Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas'


def test_a_field_no_longer_applied_is_removed_unless_someone_else_owns_it():
    cfg = deployment(minReadySeconds=5)
    live, entries = fm.apply(None, cfg, DEPLOY, "kubectl", False)
    live["metadata"]["managedFields"] = entries
    new, _ = fm.apply(live, deployment(), DEPLOY, "kubectl", False)
    assert "minReadySeconds" not in new["spec"]
    shared, entries = fm.apply(live, cfg, DEPLOY, "other", False)
    shared["metadata"]["managedFields"] = entries
    new, _ = fm.apply(shared, deployment(), DEPLOY, "kubectl", False)
    assert new["spec"]["minReadySeconds"] == 5  # still "other"'s


def test_containers_merge_by_name_and_args_are_atomic():
    live, entries = fm.apply(None, deployment(), DEPLOY, "a", False)
    live["metadata"]["managedFields"] = entries
    sidecar = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"template": {
        "spec": {"containers": [{"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]}]}}}}
    new, entries = fm.apply(live, sidecar, DEPLOY, "b", False)
    assert [c["name"] for c in new["spec"]["template"]["spec"]["containers"]] == ["nginx", "sidecar"]
    assert ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"sidecar"}', "f:args") in \
        owners(entries)[("b", "Apply")]


def test_finalizers_are_a_set_and_paths_print_as_upstream():
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "finalizers": ["a/b"]}}
    paths = fm.field_set(obj, "io.k8s.api.core.v1.ConfigMap")
    assert paths == {("f:metadata", "f:finalizers", 'v:"a/b"')}
    assert fm.path_text(next(iter(paths))) == '.metadata.finalizers[="a/b"]'


def test_manager_defaults_to_the_user_agent_prefix():
    assert fm.manager_of("", "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0") == "kubectl"
    assert fm.manager_of("", "OpenAPI-Generator/34.1.0/python") == "OpenAPI-Generator"
    assert fm.manager_of("mine", "kubectl/v1.33.1") == "mine"
