"""The kinds the API server serves: group, version, plural, kind, short names, scope, verbs and
subresources, as upstream's discovery documents list them."""

from __future__ import annotations

from dataclasses import dataclass

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    model: str = ""  # the kubernetes Python client's model name, for the schema
    verbs: tuple[str, ...] = tuple(VERBS)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", namespaced=False, short_names=("ns",),
             subresources=("status", "finalize"), model="V1Namespace",
             verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    Resource("", "v1", "nodes", "Node", namespaced=False, short_names=("no",), subresources=("status", "proxy"),
             model="V1Node"),
    Resource("", "v1", "pods", "Pod", short_names=("po",), subresources=("status", "binding", "log", "exec", "attach",
                                                                      "portforward", "proxy", "eviction"),
             categories=("all",), model="V1Pod"),
    Resource("", "v1", "services", "Service", short_names=("svc",), subresources=("status", "proxy"),
             categories=("all",), model="V1Service",
             verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")),
    Resource("", "v1", "endpoints", "Endpoints", short_names=("ep",), model="V1Endpoints"),
    Resource("", "v1", "configmaps", "ConfigMap", short_names=("cm",), model="V1ConfigMap"),
    Resource("", "v1", "secrets", "Secret", model="V1Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",), subresources=("token",),
             model="V1ServiceAccount"),
    Resource("", "v1", "events", "Event", short_names=("ev",), model="CoreV1Event"),
    Resource("", "v1", "bindings", "Binding", model="V1Binding", verbs=("create",)),
    Resource("apps", "v1", "deployments", "Deployment", short_names=("deploy",), subresources=("status", "scale"),
             categories=("all",), model="V1Deployment"),
    Resource("apps", "v1", "replicasets", "ReplicaSet", short_names=("rs",), subresources=("status", "scale"),
             categories=("all",), model="V1ReplicaSet"),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", model="V1EndpointSlice"),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short_names=("netpol",),
             model="V1NetworkPolicy"),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", model="V1Lease"),
    Resource("events.k8s.io", "v1", "events", "Event", short_names=("ev",), model="EventsV1Event"),
    Resource("apps", "v1", "statefulsets", "StatefulSet", short_names=("sts",), subresources=("status", "scale"),
             categories=("all",), model="V1StatefulSet"),
    Resource("apps", "v1", "daemonsets", "DaemonSet", short_names=("ds",), subresources=("status",),
             categories=("all",), model="V1DaemonSet"),
    Resource("apps", "v1", "controllerrevisions", "ControllerRevision", model="V1ControllerRevision"),
    Resource("", "v1", "replicationcontrollers", "ReplicationController", short_names=("rc",),
             subresources=("status", "scale"), categories=("all",), model="V1ReplicationController"),
    Resource("batch", "v1", "jobs", "Job", subresources=("status",), categories=("all",), model="V1Job"),
    Resource("batch", "v1", "cronjobs", "CronJob", short_names=("cj",), subresources=("status",),
             categories=("all",), model="V1CronJob"),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",),
             subresources=("status",), model="V1PodDisruptionBudget"),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False,
             short_names=("crd", "crds"), subresources=("status",), categories=("api-extensions",),
             model="V1CustomResourceDefinition"),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", short_names=("ing",), subresources=("status",),
             model="V1Ingress"),
    Resource("networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False, model="V1IngressClass"),
    # one storage (autoscaling/v2), each version presented as asked; v2 first: the preferred version
    Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", short_names=("hpa",),
             subresources=("status",), categories=("all",), model="V2HorizontalPodAutoscaler"),
    Resource("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", short_names=("hpa",),
             subresources=("status",), categories=("all",), model="V1HorizontalPodAutoscaler"),
    Resource("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False, short_names=("pv",),
             subresources=("status",), model="V1PersistentVolume"),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short_names=("pvc",),
             subresources=("status",), model="V1PersistentVolumeClaim"),
    Resource("storage.k8s.io", "v1", "storageclasses", "StorageClass", namespaced=False, short_names=("sc",),
             model="V1StorageClass"),
    Resource("", "v1", "resourcequotas", "ResourceQuota", short_names=("quota",), subresources=("status",),
             model="V1ResourceQuota"),
    Resource("", "v1", "limitranges", "LimitRange", short_names=("limits",), model="V1LimitRange"),
    Resource("", "v1", "podtemplates", "PodTemplate", model="V1PodTemplate"),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", model="V1Role"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False,
             model="V1ClusterRole"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", model="V1RoleBinding"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False,
             model="V1ClusterRoleBinding"),
    # the review APIs: created and answered, never stored (auth/reviews.py)
    Resource("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False,
             model="V1TokenReview", verbs=("create",)),
    Resource("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", namespaced=False,
             model="V1SelfSubjectReview", verbs=("create",)),
    Resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview",
             namespaced=False, model="V1SelfSubjectAccessReview", verbs=("create",)),
    Resource("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview",
             namespaced=False, model="V1SelfSubjectRulesReview", verbs=("create",)),
    Resource("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", namespaced=False,
             model="V1SubjectAccessReview", verbs=("create",)),
    Resource("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview",
             model="V1LocalSubjectAccessReview", verbs=("create",)),
]

BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND = {(r.group_version, r.kind): r for r in RESOURCES}
GROUPS: dict[str, list[str]] = {}
for _r in RESOURCES:
    if _r.group:
        GROUPS.setdefault(_r.group, [])
        if _r.version not in GROUPS[_r.group]:
            GROUPS[_r.group].append(_r.version)


def lookup(group: str, version: str, plural: str) -> Resource | None:
    return BY_PATH.get((group, version, plural))
