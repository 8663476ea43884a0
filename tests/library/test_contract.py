"""The contract's one table: settings, the RedisQueue spec and the README all read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from redisqueue import contract
from redisqueue.controller.resource.spec import parse_spec
from redisqueue.settings import RedisSettings, SettingsError, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"

# Where each bounded contract field sits in a RedisQueue's spec.
SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "port": ("redis", "external", "port"),
    "db": ("redis", "external", "db"),
    "pool_max_connections": ("pool", "maxConnections"),
    "pool_timeout_seconds": ("pool", "timeoutSeconds"),
    "socket_timeout_seconds": ("pool", "socketTimeoutSeconds"),
    "backoff_base_seconds": ("backoff", "baseSeconds"),
    "backoff_cap_seconds": ("backoff", "capSeconds"),
    "retry_attempts": ("backoff", "attempts"),
}
BOUNDED = [f for f in contract.FIELDS if f.maximum is not None]


def _spec_with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"redis": {"external": {"host": "cache"}}}
    node = spec
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    if path[-1] == "baseSeconds":  # keep cap >= base so only the bound is in question
        node["capSeconds"] = max(value, 30)
    return spec


def test_every_bounded_field_has_a_place_in_the_spec() -> None:
    assert {f.attr for f in BOUNDED} == set(SPEC_PATHS)


@pytest.mark.parametrize("field", BOUNDED, ids=lambda f: f.key)
def test_settings_and_spec_accept_exactly_the_tables_range(
    field: contract.ContractField[Any],
) -> None:
    assert field.maximum is not None and field.minimum is not None
    top = field.kind(field.maximum)
    over = field.kind(field.maximum + 1)
    under = field.kind(field.minimum) if field.exclusive_minimum else field.kind(field.minimum - 1)
    env = {field.key: str(top), "REDIS_BACKOFF_CAP_SECONDS": "3600"}
    assert getattr(load_settings(env, env_file=None), field.attr) == top
    parse_spec(_spec_with(SPEC_PATHS[field.attr], top))
    for bad in (over, under):
        with pytest.raises(SettingsError, match=field.key):
            load_settings({**env, field.key: str(bad)}, env_file=None)
        with pytest.raises(ValueError, match="spec"):
            parse_spec(_spec_with(SPEC_PATHS[field.attr], bad))


def test_settings_fields_and_contract_fields_are_the_tables() -> None:
    not_contract = {"environment", "unix_socket_path", "url_options"}
    settings_fields = set(RedisSettings.model_fields) - not_contract
    assert settings_fields == {f.attr for f in contract.FIELDS if f is not contract.URL}
    defaults = RedisSettings(host="h")
    for field in contract.FIELDS:
        if field.default is not None:
            assert getattr(defaults, field.attr) == field.default, field.key


def test_pydantic_bounds_come_from_the_table() -> None:
    with pytest.raises(ValidationError):
        RedisSettings(host="h", pool_timeout_seconds=contract.POOL_TIMEOUT_SECONDS.maximum + 1)


def test_readme_contract_table_is_the_tables_rendering() -> None:
    assert contract.markdown_table() in README.read_text(), (
        "README.md's contract table differs from redisqueue.contract.FIELDS; paste the output "
        "of: python -c 'from redisqueue import contract; print(contract.markdown_table())'"
    )
