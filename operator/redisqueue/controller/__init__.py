"""The operator: the RedisQueue resource, its reconciler, the probe and the health server.

Needs the ``operator`` extra (kopf, aiohttp, PyYAML). Modules here may
import the client library (:mod:`redisqueue`); the library never imports them.
See CONTRIBUTING.md for the layers.
"""
