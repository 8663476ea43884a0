"""What the leader writes for a RedisQueue, one step per module: the provisioned Redis, the
contract in the app Secrets, and status with its Events."""
