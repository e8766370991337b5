#!/usr/bin/env bash
# 13 · Desired state and self-healing.
#   sudo docs/tutorials/13-self-healing.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "Desired state and self-healing"
about "The Deployment says two replicas. Delete a pod and the ReplicaSet controller makes another; kill a container's process and the kubelet starts it again in the same pod."
cleanup+=("netlab delete deployment t13")
export KUBECONFIG=${KUBECONFIG:-$(netlab kubeconfig)}

netlab apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: t13}
spec:
  replicas: 2
  selector: {matchLabels: {app: t13}}
  template:
    metadata: {labels: {app: t13}}
    spec:
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.39
        args: [netexec]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
YAML
netlab wait -l app=t13 --count 2
pods() { netlab get pods -l app=t13 -o json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["items"]:
    if not p["metadata"].get("deletionTimestamp"):
        print(p["metadata"]["name"], p["status"]["containerStatuses"][0]["restartCount"])'; }
step "the desired state (spec.replicas) and what there is"
run kubectl get deployment t13 -o jsonpath='{.spec.replicas} wanted, {.status.readyReplicas} ready{"\n"}'
run netlab get pods -l app=t13 -o wide
victim=$(pods | head -1 | cut -d' ' -f1)

step 'delete $victim: the ReplicaSet controller sees one too few and creates a pod'
run netlab delete pod "$victim"
netlab wait -l app=t13 --count 2
run netlab get pods -l app=t13 -o wide
[ -z "$(pods | awk -v p="$victim" '$1 == p')" ]  # gone (a `! cmd` would not stop a set -e script)
run sh -c "netlab events | grep -E 'SuccessfulCreate|SuccessfulDelete' | grep t13 | tail -3"

victim=$(pods | head -1 | cut -d' ' -f1)
step 'kill the process in the container of $victim (kubectl exec ... kill 1): the kubelet sees it exit and starts it again, in the same pod'
run kubectl exec "$victim" -- kill 1
for _ in $(seq 50); do
  [ "$(pods | awk -v p="$victim" '$1 == p {print $2}')" = 1 ] && break
  sleep 0.2
done
netlab wait -l app=t13 --count 2
run netlab get pods -l app=t13
[ "$(pods | awk -v p="$victim" '$1 == p {print $2}')" = 1 ]
say "the same pod, its RESTARTS now 1: restartPolicy Always (the first restart at once, the next ones after a back-off)"
run kubectl get pod "$victim" -o jsonpath='{.status.containerStatuses[0].lastState}{"\n"}'
