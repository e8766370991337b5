"""coredns."""
