"""The default roles and bindings, as upstream's bootstrap policy (plugin/pkg/auth/authorizer/
rbac/bootstrappolicy) and what kubeadm adds to it, plus the roles of netlab's own components.
The API server makes those missing at every start (upstream's auto-reconciliation of roles
annotated rbac.authorization.kubernetes.io/autoupdate: "true")."""

from __future__ import annotations

GROUP = "rbac.authorization.k8s.io"
RW = ["create", "delete", "deletecollection", "patch", "update"]
READ = ["get", "list", "watch"]
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
EVENTS = {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]}


def r(groups, resources, verbs, names=None) -> dict:
    out = {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}
    if names:
        out["resourceNames"] = list(names)
    return out


def urls(paths, verbs=("get",)) -> dict:
    return {"nonResourceURLs": list(paths), "verbs": list(verbs)}


def agg(label: str) -> dict:
    return {"clusterRoleSelectors": [{"matchLabels": {f"{GROUP}/aggregate-to-{label}": "true"}}]}


VIEW_CORE = ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
             "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
             "services/status"]
VIEW_STATUS = ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
               "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"]
APPS = ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
        "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
        "statefulsets/scale", "statefulsets/status"]

# name -> (rules, aggregationRule or None, extra labels)
CLUSTER_ROLES: dict[str, tuple[list[dict], dict | None, dict]] = {
    "cluster-admin": ([r("*", "*", "*"), urls(["*"], ["*"])], None, {}),
    "admin": ([], agg("admin"), {}),
    "edit": ([], agg("edit"), {f"{GROUP}/aggregate-to-admin": "true"}),
    "view": ([], agg("view"), {f"{GROUP}/aggregate-to-edit": "true"}),
    "system:aggregate-to-admin": ([
        r(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
        r([GROUP], ["rolebindings", "roles"], ALL_VERBS),
    ], None, {f"{GROUP}/aggregate-to-admin": "true"}),
    "system:aggregate-to-edit": ([
        r([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], READ),
        r([""], ["serviceaccounts"], ["impersonate"]),
        r([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], RW),
        r([""], ["pods/eviction"], ["create"]),
        r([""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                 "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"], RW),
        r([""], ["serviceaccounts/token"], ["create"]),
        r(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                     "replicasets/scale", "statefulsets", "statefulsets/scale"], RW),
        r(["autoscaling"], ["horizontalpodautoscalers"], RW),
        r(["batch"], ["cronjobs", "jobs"], RW),
        r(["extensions"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses",
                           "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"], RW),
        r(["policy"], ["poddisruptionbudgets"], RW),
        r(["networking.k8s.io"], ["ingresses", "networkpolicies"], RW),
        r(["coordination.k8s.io"], ["leases"], ALL_VERBS),
    ], None, {f"{GROUP}/aggregate-to-edit": "true"}),
    "system:aggregate-to-view": ([
        r([""], VIEW_CORE, READ), r([""], VIEW_STATUS, READ), r([""], ["namespaces"], READ),
        r(["discovery.k8s.io"], ["endpointslices"], READ),
        r(["apps"], APPS, READ),
        r(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
        r(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
        r(["extensions"], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                           "deployments/status", "ingresses", "ingresses/status", "networkpolicies", "replicasets",
                           "replicasets/scale", "replicasets/status", "replicationcontrollers/scale"], READ),
        r(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
        r(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], READ),
    ], None, {f"{GROUP}/aggregate-to-view": "true"}),
    "system:auth-delegator": ([r(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
                               r(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"])], None, {}),
    "system:basic-user": ([r(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                             ["create"]),
                           r(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"])], None, {}),
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient": (
        [r(["certificates.k8s.io"], ["certificatesigningrequests/nodeclient"], ["create"])], None, {}),
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient": (
        [r(["certificates.k8s.io"], ["certificatesigningrequests/selfnodeclient"], ["create"])], None, {}),
    **{f"system:certificates.k8s.io:{n}-approver": (
        [r(["certificates.k8s.io"], ["signers"], ["approve"], [f"kubernetes.io/{n}"])], None, {})
       for n in ("kube-apiserver-client", "kube-apiserver-client-kubelet", "kubelet-serving", "legacy-unknown")},
    "system:discovery": ([urls(["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                                "/openapi/*", "/readyz", "/version", "/version/"])], None, {}),
    "system:heapster": ([r([""], ["events", "namespaces", "nodes", "pods"], READ),
                         r(["extensions"], ["deployments"], READ)], None, {}),
    "system:kube-aggregator": ([r([""], ["endpoints", "services"], READ)], None, {}),
    "system:kube-controller-manager": ([
        EVENTS, r(["coordination.k8s.io"], ["leases"], ["create"]),
        r(["coordination.k8s.io"], ["leases"], ["get", "update"], ["kube-controller-manager"]),
        r([""], ["secrets", "serviceaccounts"], ["create"]), r([""], ["secrets"], ["delete"]),
        r([""], ["configmaps", "namespaces", "secrets", "serviceaccounts"], ["get"]),
        r([""], ["secrets", "serviceaccounts"], ["update"]),
        r(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        r(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
        r(["*"], ["*"], ["list", "watch"]), r([""], ["serviceaccounts/token"], ["create"]),
    ], None, {}),
    "system:kube-dns": ([r([""], ["endpoints", "services"], ["list", "watch"])], None, {}),
    "system:kube-scheduler": ([
        EVENTS, r(["coordination.k8s.io"], ["leases"], ["create"]),
        r(["coordination.k8s.io"], ["leases"], ["get", "update"], ["kube-scheduler"]),
        r([""], ["nodes"], READ), r([""], ["pods"], ["delete", "get", "list", "watch"]),
        r([""], ["bindings", "pods/binding"], ["create"]), r([""], ["pods/status"], ["patch", "update"]),
        r([""], ["replicationcontrollers", "services"], READ), r(["apps", "extensions"], ["replicasets"], READ),
        r(["apps"], ["statefulsets"], READ), r(["policy"], ["poddisruptionbudgets"], READ),
        r([""], ["persistentvolumeclaims", "persistentvolumes"], READ),
        r(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        r(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
        r(["storage.k8s.io"], ["csinodes"], READ), r([""], ["namespaces"], READ),
        r(["storage.k8s.io"], ["csidrivers"], READ), r(["storage.k8s.io"], ["csistoragecapacities"], READ),
    ], None, {}),
    "system:kubelet-api-admin": ([r([""], ["nodes"], READ), r([""], ["nodes"], ["proxy"]),
                                  r([""], ["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"], ["*"])],
                                 None, {}),
    "system:monitoring": ([urls(["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis",
                                 "/readyz", "/readyz/*"])], None, {}),
    "system:node": ([
        r(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        r(["authorization.k8s.io"], ["localsubjectaccessreviews", "subjectaccessreviews"], ["create"]),
        r([""], ["services"], READ), r([""], ["nodes"], ["create", "get", "list", "watch"]),
        r([""], ["nodes/status"], ["patch", "update"]), r([""], ["nodes"], ["patch", "update"]),
        r([""], ["events"], ["create", "patch", "update"]), r([""], ["pods"], READ),
        r([""], ["pods"], ["create", "delete"]), r([""], ["pods/status"], ["patch", "update"]),
        r([""], ["pods/eviction"], ["create"]), r([""], ["configmaps", "secrets"], READ),
        r([""], ["persistentvolumeclaims", "persistentvolumes"], ["get"]), r([""], ["endpoints"], ["get"]),
        r(["certificates.k8s.io"], ["certificatesigningrequests"], ["create", "get", "list", "watch"]),
        r(["coordination.k8s.io"], ["leases"], ["create", "delete", "get", "patch", "update"]),
        r(["storage.k8s.io"], ["volumeattachments"], ["get"]), r([""], ["serviceaccounts/token"], ["create"]),
        r([""], ["persistentvolumeclaims/status"], ["get", "patch", "update"]),
        r(["storage.k8s.io"], ["csidrivers"], READ),
        r(["storage.k8s.io"], ["csinodes"], ["create", "delete", "get", "patch", "update"]),
        r(["node.k8s.io"], ["runtimeclasses"], READ),
    ], None, {}),
    "system:node-bootstrapper": ([r(["certificates.k8s.io"], ["certificatesigningrequests"],
                                    ["create", "get", "list", "watch"])], None, {}),
    "system:node-problem-detector": ([r([""], ["nodes"], ["get"]), r([""], ["nodes/status"], ["patch"]), EVENTS],
                                     None, {}),
    "system:node-proxier": ([r([""], ["endpoints", "services"], ["list", "watch"]), r([""], ["nodes"], READ),
                             EVENTS, r(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"])], None, {}),
    "system:persistent-volume-provisioner": ([
        r([""], ["persistentvolumes"], ["create", "delete", "get", "list", "watch"]),
        r([""], ["persistentvolumeclaims"], ["get", "list", "update", "watch"]),
        r(["storage.k8s.io"], ["storageclasses"], READ), r([""], ["events"], ["watch"]), EVENTS,
    ], None, {}),
    "system:public-info-viewer": ([urls(["/healthz", "/livez", "/readyz", "/version", "/version/"])], None, {}),
    "system:service-account-issuer-discovery": ([urls(["/.well-known/openid-configuration", "/openid/v1/jwks"])],
                                                None, {}),
    "system:volume-scheduler": ([r([""], ["persistentvolumes"], ["get", "list", "patch", "update", "watch"]),
                                 r(["storage.k8s.io"], ["storageclasses"], READ),
                                 r([""], ["persistentvolumeclaims"], ["get", "list", "patch", "update", "watch"])],
                                None, {}),
    # kubeadm's
    "system:coredns": ([r([""], ["endpoints", "services", "pods", "namespaces"], ["list", "watch"]),
                        r(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"])], None, {}),
    "kubeadm:get-nodes": ([r([""], ["nodes"], ["get"])], None, {}),
}

# netlab's own node agents, each with what it reads and writes (upstream's equivalents run with
# roles their projects ship: MetalLB's speaker, kube-network-policies; ingress-nginx's ClusterRole
# comes with its manifest, examples/ingress-nginx.yaml)
NETLAB_ROLES: dict[str, list[dict]] = {
    # netlab's controller manager is one identity for all its controllers (upstream gives each
    # controller a service account and a system:controller:<name> role); this is their union
    "netlab:controller-manager": [r(["*"], ["*"], ALL_VERBS)],
    "netlab:netpol-agent": [r([""], ["pods", "namespaces", "nodes"], READ),
                            r(["networking.k8s.io"], ["networkpolicies"], READ), EVENTS],
    "netlab:lb-speaker": [r([""], ["services", "nodes", "endpoints"], READ),
                          r(["discovery.k8s.io"], ["endpointslices"], READ),
                          r(["coordination.k8s.io"], ["leases"], ALL_VERBS), EVENTS],
}


def user(name): return {"apiGroup": GROUP, "kind": "User", "name": name}
def group(name): return {"apiGroup": GROUP, "kind": "Group", "name": name}
def sa(ns, name): return {"kind": "ServiceAccount", "name": name, "namespace": ns}


AUTHED, UNAUTHED = group("system:authenticated"), group("system:unauthenticated")
# name -> (ClusterRole, subjects)
CLUSTER_ROLE_BINDINGS: dict[str, tuple[str, list[dict]]] = {
    "cluster-admin": ("cluster-admin", [group("system:masters")]),
    "system:basic-user": ("system:basic-user", [AUTHED]),
    "system:discovery": ("system:discovery", [AUTHED]),
    "system:public-info-viewer": ("system:public-info-viewer", [AUTHED, UNAUTHED]),
    "system:kube-controller-manager": ("system:kube-controller-manager", [user("system:kube-controller-manager")]),
    "system:kube-dns": ("system:kube-dns", [sa("kube-system", "kube-dns")]),
    "system:kube-scheduler": ("system:kube-scheduler", [user("system:kube-scheduler")]),
    "system:volume-scheduler": ("system:volume-scheduler", [user("system:kube-scheduler")]),
    "system:monitoring": ("system:monitoring", [group("system:monitoring")]),
    "system:node": ("system:node", []),  # kubelets are authorized by the Node authorizer
    "system:node-proxier": ("system:node-proxier", [user("system:kube-proxy")]),
    "system:service-account-issuer-discovery": ("system:service-account-issuer-discovery",
                                                [group("system:serviceaccounts")]),
    # kubeadm's
    "kubeadm:cluster-admins": ("cluster-admin", [group("kubeadm:cluster-admins")]),
    "kubeadm:node-proxier": ("system:node-proxier", [sa("kube-system", "kube-proxy")]),
    "kubeadm:get-nodes": ("kubeadm:get-nodes", [group("system:bootstrappers:kubeadm:default-node-token")]),
    "kubeadm:kubelet-bootstrap": ("system:node-bootstrapper",
                                  [group("system:bootstrappers:kubeadm:default-node-token")]),
    "system:coredns": ("system:coredns", [sa("kube-system", "coredns")]),
    # netlab's
    "netlab:controller-manager": ("netlab:controller-manager", [user("system:kube-controller-manager")]),
    "netlab:netpol-agent": ("netlab:netpol-agent", [user("netlab:netpol-agent")]),
    "netlab:lb-speaker": ("netlab:lb-speaker", [user("netlab:lb-speaker")]),
}

# Roles in a namespace: (namespace, name) -> (rules, subjects)
ROLES: dict[tuple[str, str], tuple[list[dict], list[dict]]] = {
    ("kube-public", "kubeadm:bootstrap-signer-clusterinfo"): (
        [r([""], ["configmaps"], ["get"], ["cluster-info"])], [user("system:anonymous")]),
    ("kube-system", "kube-proxy"): ([r([""], ["configmaps"], ["get"], ["kube-proxy"])],
                                    [group("system:bootstrappers:kubeadm:default-node-token")]),
    ("kube-system", "kubeadm:kubelet-config"): ([r([""], ["configmaps"], ["get"], ["kubelet-config"])],
                                                [group("system:nodes"),
                                                 group("system:bootstrappers:kubeadm:default-node-token")]),
    ("kube-system", "kubeadm:nodes-kubeadm-config"): ([r([""], ["configmaps"], ["get"], ["kubeadm-config"])],
                                                      [group("system:nodes"),
                                                       group("system:bootstrappers:kubeadm:default-node-token")]),
    ("kube-system", "extension-apiserver-authentication-reader"): (
        [r([""], ["configmaps"], ["get", "list", "watch"], ["extension-apiserver-authentication"])],
        [user("system:kube-controller-manager"), user("system:kube-scheduler")]),
    ("kube-system", "system::leader-locking-kube-controller-manager"): (
        [r([""], ["configmaps"], ["watch"]),
         r([""], ["configmaps"], ["get", "update"], ["kube-controller-manager"])],
        [user("system:kube-controller-manager")]),
    ("kube-system", "system::leader-locking-kube-scheduler"): (
        [r([""], ["configmaps"], ["watch"]), r([""], ["configmaps"], ["get", "update"], ["kube-scheduler"])],
        [user("system:kube-scheduler")]),
}

BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE = {"rbac.authorization.kubernetes.io/autoupdate": "true"}


def objects() -> list[tuple[str, dict]]:
    """Every default object as (plural, object)."""
    out: list[tuple[str, dict]] = []
    gv = f"{GROUP}/v1"
    for name, (rules, aggregation, labels) in CLUSTER_ROLES.items():
        obj = {"apiVersion": gv, "kind": "ClusterRole", "metadata": {
            "name": name, "labels": {**BOOTSTRAP_LABELS, **labels}, "annotations": dict(AUTOUPDATE)},
            "rules": rules}
        if aggregation:
            obj["aggregationRule"] = aggregation
        out.append(("clusterroles", obj))
    for name, rules in NETLAB_ROLES.items():
        out.append(("clusterroles", {"apiVersion": gv, "kind": "ClusterRole", "metadata": {"name": name},
                                     "rules": rules}))
    for name, (role, subjects) in CLUSTER_ROLE_BINDINGS.items():
        meta = {"name": name, "annotations": dict(AUTOUPDATE)}
        if not name.startswith(("kubeadm:", "netlab:", "system:coredns")):
            meta["labels"] = dict(BOOTSTRAP_LABELS)
        obj = {"apiVersion": gv, "kind": "ClusterRoleBinding", "metadata": meta,
               "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role}}
        if subjects:
            obj["subjects"] = subjects
        out.append(("clusterrolebindings", obj))
    for (ns, name), (rules, subjects) in ROLES.items():
        out.append(("roles", {"apiVersion": gv, "kind": "Role", "metadata": {"name": name, "namespace": ns},
                              "rules": rules}))
        out.append(("rolebindings", {"apiVersion": gv, "kind": "RoleBinding",
                                     "metadata": {"name": name, "namespace": ns},
                                     "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": name},
                                     "subjects": subjects}))
    return out


def ensure(objs) -> None:
    """Make the default objects that are missing (what a user changed stays changed)."""
    from netlab.api.resources import lookup
    from netlab.control.apiserver.store import Exists

    for plural, obj in objects():
        r = lookup(GROUP, "v1", plural)
        ns = obj["metadata"].get("namespace")
        key = objs.key(r, ns, obj["metadata"]["name"])
        if objs.store.get(key) is None:
            objs.prepare_create(r, obj, ns)
            try:
                objs.store.create(key, obj)
            except Exists:
                pass
