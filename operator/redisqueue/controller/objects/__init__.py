"""The objects the operator writes, built from a spec as plain dicts: the Redis workload,
the app-Secret bodies and the Ready Event. Pure: no I/O."""
