"""Talking to the Kubernetes API server: the client, the list+watch loop, the Lease, and
kopf's storage of what it has handled."""
