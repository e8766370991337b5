"""lb-speaker: the load-balancer announcer on every node, as MetalLB's speaker in L2 mode.

For each LoadBalancer Service that is the lab's (netlab.api.loadbalancers) and has an address in
its status, one node is elected (election.py: among the nodes whose speaker is alive, not
excluded from load balancers, and, for externalTrafficPolicy Local, holding a ready endpoint;
ordered by sha256 of `node#ip`), and that node answers ARP for the address with its eth0's MAC
(arp.py: a userspace responder on a raw socket, and gratuitous ARP when it takes over). The
address is on no interface: packets for it reach the node's netfilter, where kube-proxy's rules
for load-balancer IPs take them on. Which speakers are alive comes from their heartbeats to each
other over the node network (memberlist.py, memberlist's port 7946), so a node whose link goes
down is replaced within seconds. Imports only netlab.api and netlab.kit.
"""
