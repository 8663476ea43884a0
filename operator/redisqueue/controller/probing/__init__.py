"""Real PINGs: shared, bounded connection pools per Redis endpoint, and each RedisQueue's
view of its last result and metric series."""
