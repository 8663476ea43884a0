"""redisqueue: a Redis job-queue operator for Kubernetes and the client library its apps use."""

#: The project's one version number: the package's (pyproject.toml reads it from here), the
#: image's (the release tags it) and the Helm chart's version and appVersion.
__version__ = "0.1.0"
