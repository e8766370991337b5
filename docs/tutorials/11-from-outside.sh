#!/usr/bin/env bash
# 11 · From outside the cluster.
#   sudo docs/tutorials/11-from-outside.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "From outside the cluster"
about "A LoadBalancer Service gets an address from the pool, one node answers ARP for it (MetalLB's L2 mode), kube-proxy takes the packet on; externalTrafficPolicy Local keeps the client's address; then an Ingress, routed by ingress-nginx behind its own LoadBalancer Service, asked by name with curl --resolve."
repo=$(cd "$(dirname "$0")/../.." && pwd)
cleanup+=("netlab delete deployment t11" "netlab delete service t11")
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

netlab apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: t11}
spec:
  replicas: 2
  selector: {matchLabels: {app: t11}}
  template:
    metadata: {labels: {app: t11}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: t11}
spec:
  type: LoadBalancer
  selector: {app: t11}
  ports: [{port: 80, targetPort: 8080}]
YAML
netlab wait -l app=t11 --count 2
for _ in $(seq 50); do
  ip=$(netlab get service t11 -o json | json '(d["status"]["loadBalancer"].get("ingress") or [{}])[0].get("ip", "")')
  [ -n "$ip" ] && break; sleep 0.2
done
sleep 1.5

step "the Service got an address from the lab's pool (the controller manager's service-lb-controller)"
run netlab status | grep '^outside'
run netlab get service t11

step "the outside (a machine on the nodes' network, not a node) asks for it: fresh connections, two pods"
for _ in 1 2 3 4 5 6; do netlab exec outside -- curl -s -m 2 "http://$ip/hostname"; echo; done | sort | uniq -c | tee /tmp/t11.out
[ "$(wc -l < /tmp/t11.out)" = 2 ]

step 'who answered ARP for $ip: the eth0 MAC of one node (its lb-speaker); the address is on no interface'
run netlab exec outside -- ip neigh show "$ip"

step "the request's path: ARP, the announcing node's rules (KUBE-SERVICES -> KUBE-EXT -> KUBE-SVC -> DNAT), the pod"
netlab trace outside "$ip" | tee /tmp/t11.trace
grep -q "received by: pod default/t11-" /tmp/t11.trace

step "externalTrafficPolicy Cluster masquerades: the pod sees a node's address, not the outside's"
outside=$(netlab status | awk '$1 == "outside:" {print $2}')
netlab exec outside -- curl -s -m 2 "http://$ip/clientip"; echo
netlab apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: t11}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: t11}
  ports: [{port: 80, targetPort: 8080}]
YAML
sleep 2
step 'externalTrafficPolicy Local: only a node with a pod announces it, and the pod sees the outside ($outside)'
netlab exec outside -- curl -s -m 2 "http://$ip/clientip" | tee /tmp/t11.client; echo
grep -q "^$outside:" /tmp/t11.client
hc=$(netlab get service t11 -o json | json 'd["spec"]["healthCheckNodePort"]')
worker_ip=$(netlab status | awk '$1 == "worker" {print $3}')
step 'the health-check node port $hc of kube-proxy on worker: how many of the pods of the Service are there'
netlab exec outside -- curl -s -m 2 "http://$worker_ip:$hc/healthz"; echo

if ! command -v nginx >/dev/null; then
  say "(nginx is not installed: apt-get install nginx, then run this again for the Ingress part)"
  exit 0
fi
cleanup+=("netlab delete ingress t11" "netlab delete namespace ingress-nginx" "netlab delete ingressclass nginx")
step "ingress-nginx: a Deployment in its namespace behind a LoadBalancer Service, driving the host's nginx"
for _ in $(seq 400); do netlab get namespace ingress-nginx >/dev/null 2>&1 || break; sleep 0.3; done  # (a last run's)
run netlab apply -f "$repo/examples/ingress-nginx.yaml"
netlab wait -l app.kubernetes.io/component=controller -n ingress-nginx --count 1 --timeout 90
netlab apply -f - <<'YAML'
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: t11}
spec:
  ingressClassName: nginx
  rules:
  - host: t11.example
    http:
      paths:
      - {path: /hostname, pathType: Exact, backend: {service: {name: t11, port: {number: 80}}}}
YAML
for _ in $(seq 50); do
  lb=$(netlab get ingress t11 -o json | json '(d["status"]["loadBalancer"].get("ingress") or [{}])[0].get("ip", "")')
  [ -n "$lb" ] && break; sleep 0.2
done
run netlab get ingress t11
step 'by name from the outside: curl --resolve t11.example:80:$lb'
for _ in $(seq 30); do
  out=$(netlab exec outside -- curl -s -m 2 --resolve "t11.example:80:$lb" http://t11.example/hostname || true)
  case "$out" in t11-*) break ;; esac; sleep 0.2
done
echo "$out"; case "$out" in t11-*) ;; *) exit 1 ;; esac
pod=$(netlab get pods -n ingress-nginx -o json | json 'd["items"][0]["metadata"]["name"]')
step "the nginx.conf the controller rendered (kubectl exec ... cat /etc/nginx/nginx.conf): t11.example's server"
netlab exec -n ingress-nginx "$pod" -- cat /etc/nginx/nginx.conf | sed -n '/## server t11.example/,/^  }/p'
step "and the whole path: ARP, the rules to the controller's pod, the backend nginx proxied to"
netlab trace outside t11.example --path /hostname
