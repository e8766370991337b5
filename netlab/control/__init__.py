"""The control plane's components: the API server, the controller manager and the scheduler."""
