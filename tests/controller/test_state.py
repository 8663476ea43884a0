"""The index of Secrets RedisQueues read, which filters the Secret watch (pure)."""

from __future__ import annotations

from redisqueue.controller.state import SecretReferences


def test_a_secret_is_followed_while_some_redisqueue_reads_it() -> None:
    refs = SecretReferences()
    refs.set("team", "a", frozenset({"auth", "ca"}))
    refs.set("team", "b", frozenset({"auth"}))
    assert ("team", "auth") in refs and ("team", "ca") in refs
    assert refs.readers("team", "auth") == ["a", "b"]
    assert ("other", "auth") not in refs  # same name, another namespace: not followed

    refs.set("team", "a", frozenset({"auth"}))  # a no longer reads the CA Secret
    assert ("team", "ca") not in refs
    refs.forget("team", "b")
    assert refs.readers("team", "auth") == ["a"]
    refs.forget("team", "a")
    assert len(refs) == 0
