"""The Kubernetes API as every component sees it: the kinds served (resources) and the client with
its informer (client)."""
