#!/usr/bin/env bash
# 10 · NetworkPolicy.
#   sudo docs/tutorials/10-network-policy.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "NetworkPolicy"
about "Once a policy selects a pod, only what some policy allows gets in. The network-policy agent on the pod's node turns the policies into nftables rules you can read: a map from the pod's address to its chain, a chain per policy, sets of peer addresses, counters."
ns=t10
cleanup+=("netlab delete namespace $ns")

step 'namespace $ns: a web pod on worker, a frontend client on worker2, another client beside web'
netlab apply -f - <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: $ns}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: $ns, labels: {app: web}}
spec:
  nodeName: worker
  containers:
  - name: web
    image: registry.k8s.io/e2e-test-images/agnhost:2.39
    args: [netexec, --http-port=8080]
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $ns}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: frontend, namespace: $ns, labels: {role: frontend}}
spec:
  nodeName: worker2
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: $ns, labels: {role: other}}
spec:
  nodeName: worker
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
YAML
netlab wait -n $ns -l app=web
netlab wait -n $ns -l role --count 2
web_ip=$(netlab get pod web -n $ns -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["podIP"])')
# a client asks web for its name: by IP, or through the Service; a dropped SYN times out in 2 s
ask() { netlab exec -n $ns "$1" -- wget -qO- -T 2 -t 1 "http://$2/hostname" 2>/dev/null || true; }
expect() { local got; got=$(ask "$1" "$2"); printf '%-9s -> %-20s %s\n' "$1" "$2" "${got:-(no answer)}"; [ "$got" = "$3" ]; }

step "no policy yet: both clients reach web, by IP and through the Service"
expect frontend "$web_ip:8080" web
expect other "web.$ns" web

step 'a default deny: a policy that selects every pod of $ns and allows nothing in'
netlab apply -f - <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: $ns}
spec:
  podSelector: {}
  policyTypes: [Ingress]
YAML
run netlab get networkpolicy -n $ns
sleep 1
expect frontend "$web_ip:8080" ""
expect other "$web_ip:8080" ""

step "on worker, the agent's table: web's address maps to web's chain, which ends in a counted drop"
run netlab exec worker -- nft list map inet netlab-netpol ingress-pods
run netlab exec worker -- nft list chain inet netlab-netpol pod-ingress-$ns/web | tee /tmp/t10.chain
grep -q "jump ingress-$ns/default-deny comment \"NetworkPolicy $ns/default-deny\"" /tmp/t10.chain
grep -Eq "counter packets [1-9]" /tmp/t10.chain

step "trace one probe: the kernel's own trace names the verdict, its node, direction and policy"
run netlab trace -n $ns other web:8080 | tee /tmp/t10.trace
grep -q "ingress of pod $ns/web on node worker: DROPPED by the default deny of NetworkPolicy $ns/default-deny" /tmp/t10.trace

step "the policy as the kernel holds it, grouped: the pods it selects, their drops, its rules (none)"
run netlab rules --policy $ns/default-deny | tee /tmp/t10.rules
grep -Eq "selects pod $ns/web \\($web_ip\\): [1-9][0-9]* packets dropped" /tmp/t10.rules

step "allow the frontend in, on web's port named http (policies add up: default-deny stays)"
netlab apply -f - <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-frontend, namespace: $ns}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: frontend}}}]
    ports: [{port: http}]
YAML
sleep 1
expect frontend "$web_ip:8080" web
expect other "$web_ip:8080" ""

step "through the Service too: kube-proxy DNATs first, so the policy sees web itself"
expect frontend "web.$ns" web
expect other "web.$ns" ""

step "the policy as rules: the frontend's address in a set, the named port resolved to 8080 on web"
run netlab exec worker -- nft list chain inet netlab-netpol ingress-$ns/allow-frontend
run netlab exec worker -- nft list set inet netlab-netpol ingress-$ns/allow-frontend/0/0
run netlab exec worker -- nft list set inet netlab-netpol ingress-$ns/allow-frontend/0/named-ports | tee /tmp/t10.ports
grep -q "$web_ip . tcp . 8080" /tmp/t10.ports

step "trace the frontend's probe again: now a rule of allow-frontend lets it in"
run netlab trace -n $ns frontend web:8080 | tee /tmp/t10.trace
grep -q "ingress of pod $ns/web on node worker: allowed by NetworkPolicy $ns/allow-frontend rule 0" /tmp/t10.trace

step "allow-frontend grouped: rule 0, its peer (the frontend's address), its port, the packets it let in"
run netlab rules --policy $ns/allow-frontend | tee /tmp/t10.rules
grep -Eq "ports named TCP/http \\($web_ip tcp/8080\\) +[1-9][0-9]* packets accepted" /tmp/t10.rules
