"""The registry of RedisQueues and its index of the Secrets they read (pure)."""

from __future__ import annotations

from redisqueue.controller.readside.registry import Registry
from redisqueue.controller.resource.identity import QueueRef
from redisqueue.controller.resource.names import QueueNames


def test_a_secret_is_followed_while_some_redisqueue_reads_it() -> None:
    registry = Registry()
    registry.add(QueueNames("team", "a", "uid-a"))
    registry.add(QueueNames("team", "b", "uid-b"))
    a, b = registry.get(QueueRef("team", "a")), registry.get(QueueRef("team", "b"))
    assert a is not None and b is not None
    registry.set_reads(a, frozenset({"auth", "ca"}))
    registry.set_reads(b, frozenset({"auth"}))
    assert registry.reads_secret("team", "auth") and registry.reads_secret("team", "ca")
    assert [s.name for s in registry.readers("team", "auth")] == ["a", "b"]
    assert not registry.reads_secret("other", "auth")  # same name, another namespace

    registry.set_reads(a, frozenset({"auth"}))  # a no longer reads the CA Secret
    assert not registry.reads_secret("team", "ca")
    registry.forget(QueueRef("team", "b"))
    assert [s.name for s in registry.readers("team", "auth")] == ["a"]
    registry.forget(QueueRef("team", "a"))
    assert registry.secrets_read == 0 and len(registry) == 0


def test_a_new_uid_under_an_old_name_is_a_new_redisqueue() -> None:
    registry = Registry()
    registry.add(QueueNames("team", "a", "uid-1"))
    old = registry.get(QueueRef("team", "a"), "uid-1")
    assert old is not None
    registry.set_reads(old, frozenset({"auth"}))
    _, replaced = registry.add(QueueNames("team", "a", "uid-2"))
    assert replaced is old
    assert registry.get(QueueRef("team", "a"), "uid-1") is None
    assert registry.get(QueueRef("team", "a"), "uid-2") is not None
    assert not registry.reads_secret("team", "auth")  # the old one's reads went with it
