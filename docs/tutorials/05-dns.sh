#!/usr/bin/env bash
# 05 · DNS and ndots.
#   sudo docs/tutorials/05-dns.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "DNS and ndots"
about "The resolv.conf of a pod sends every name with fewer than 5 dots through the search path first, so web becomes web.default.svc.cluster.local."
cleanup+=("netlab delete service t05" "netlab delete pod t05-client")

netlab apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: t05}
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: Pod
metadata: {name: t05-client, labels: {app: t05-client}}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
YAML
netlab wait -l app=t05-client

step "the pod's resolv.conf (dnsPolicy ClusterFirst)"
run netlab exec t05-client -- cat /etc/resolv.conf

step "a short name, through the search path"
run netlab exec t05-client -- nslookup t05
netlab exec t05-client -- getent hosts t05 | grep -q "t05.default.svc.cluster.local"

step "what the resolver asks, in order (dig +search shows the expansion)"
run netlab exec t05-client -- dig +search +showsearch +noall +question +answer t05

step "the record types: SRV for a named port, PTR for the ClusterIP"
run netlab exec t05-client -- dig +short SRV _dns._udp.kube-dns.kube-system.svc.cluster.local
run netlab exec t05-client -- dig +short -x 10.96.0.10
