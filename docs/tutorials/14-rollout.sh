#!/usr/bin/env bash
# 14 · A Deployment rollout, and `kubectl rollout undo`.
#   sudo docs/tutorials/14-rollout.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "A rollout and its undo, under a client that never sees an error"
about "A changed pod template makes a new ReplicaSet: the Deployment controller scales it up one pod at a time (maxSurge 1, maxUnavailable 0) and the old one down as new pods turn Ready; the EndpointSlice follows, and rollout undo brings the old template back the same way."
tmp=${TMPDIR:-/tmp}
cleanup+=("netlab delete deployment t14" "netlab delete service t14" "netlab delete pod t14-client"
          "rm -f '$tmp/t14.follow' '$tmp/t14.client'")
export KUBECONFIG=${KUBECONFIG:-$(netlab kubeconfig)}
deployment() {  # the Deployment, its pods saying $1 in their VERSION variable
  netlab apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: t14}
spec:
  replicas: 3
  selector: {matchLabels: {app: t14}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: t14}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: registry.k8s.io/e2e-test-images/agnhost:2.39
        # serves on for 3 s after SIGTERM, while the endpoint leaves every node's rules
        args: [netexec, --delay-shutdown=3]
        env: [{name: VERSION, value: "$1"}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
YAML
}
deployment v1
netlab apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: t14}
spec:
  selector: {app: t14}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: t14-client, labels: {app: t14-client}}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
YAML
netlab wait -l app=t14 --count 3
netlab wait -l app=t14-client
kubectl rollout status deployment/t14 --timeout=60s >/dev/null
run kubectl get replicasets -l app=t14

step "a client asks the Service ten times a second for the whole rollout and its undo"
# to the ClusterIP (this is about endpoints, not DNS), until the file t14.stop appears in the
# client's /tmp (at most 600 requests)
ip=$(netlab get svc t14 -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["spec"]["clusterIP"])')
netlab exec t14-client -- sh -c "rm -f /tmp/t14.stop; for i in \$(seq 600); do [ -e /tmp/t14.stop ] && break
  if wget -qO- -T 2 http://$ip/hostname >/dev/null; then echo ok; else echo FAILED; fi; sleep 0.1; done" >"$tmp/t14.client" &
client=$!
cleanup+=("kill $client")
netlab events --follow --timeout 60 >"$tmp/t14.follow" &
watcher=$!
cleanup+=("kill $watcher")
for _ in $(seq 50); do grep -q ok "$tmp/t14.client" && break; sleep 0.2; done

step "roll out a new template (VERSION v2): a second ReplicaSet grows as the first shrinks"
deployment v2
run kubectl rollout status deployment/t14 --timeout=60s
run kubectl get replicasets -l app=t14

step "undo it: the first ReplicaSet grows back, the second goes to zero"
run kubectl rollout undo deployment/t14
run kubectl rollout status deployment/t14 --timeout=60s
run kubectl get replicasets -l app=t14
run kubectl rollout history deployment/t14
[ "$(kubectl get deployment t14 -o jsonpath='{.spec.template.spec.containers[0].env[0].value}')" = v1 ]

step "what the watch saw: the ReplicaSets' replicas, and the EndpointSlice's endpoints, change after change"
sleep 2
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
run grep -E "ReplicaSet/t14-[a-z0-9]+ MODIFIED|EndpointSlice/t14-" "$tmp/t14.follow"
[ "$(grep -oE 'ReplicaSet/t14-[a-z0-9]+' "$tmp/t14.follow" | sort -u | wc -l)" -ge 2 ]

step "and the client: every answer was an answer, none an error"
netlab exec t14-client -- touch /tmp/t14.stop
wait "$client" || true
run sh -c "sort '$tmp/t14.client' | uniq -c"
grep -q ok "$tmp/t14.client"
[ "$(grep -c FAILED "$tmp/t14.client" || true)" = 0 ]  # (a `! grep` would not stop a set -e script)
