"""redisqueue: a Redis job-queue operator for Kubernetes and the client library its apps use."""

__version__ = "0.1.0"
