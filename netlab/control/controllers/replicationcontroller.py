"""The ReplicationController controller: upstream runs the ReplicaSet controller's code for
ReplicationControllers (their equality-based selector is a ReplicaSet's matchLabels), and so
does netlab: `spec.replicas` active pods named `<rc>-<5 chars>`, owned by the controller,
the least useful deleted first, and the same status."""

from __future__ import annotations

from netlab.control.controllers.replicaset import ReplicaSetController


class ReplicationControllerController(ReplicaSetController):
    name = "replication-controller"
    resource, kind = "replicationcontrollers", "ReplicationController"
