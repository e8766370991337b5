"""What runs on every node: the kubelet with its runtime, and the built-in programs pods run."""
