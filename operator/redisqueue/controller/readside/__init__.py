"""The read side every replica runs: the registry of RedisQueues, the Secrets they read,
their contracts, probes created under the operator's policy, and the probe schedule."""
