"""Settings: the connection contract read from the environment and .env."""

from __future__ import annotations

from pathlib import Path

import pytest

from redisqueue.contract import CONTRACT_KEYS, ConnectionContract, build_url, redact_url
from redisqueue.settings import SettingsError, load_settings


def load(env: dict[str, str], env_file: Path | None = None):  # type: ignore[no-untyped-def]
    return load_settings(env, env_file=env_file)


def test_defaults_are_the_contracts_development_defaults() -> None:
    s = load({})
    assert (s.host, s.port, s.db, s.tls) == ("localhost", 6379, 0, False)
    assert s.pool_max_connections == 50
    assert s.pool_timeout_seconds == 5
    assert (s.backoff_base_seconds, s.backoff_cap_seconds, s.retry_attempts) == (1, 30, 10)


def test_production_pool_default_is_100() -> None:
    s = load({"REDIS_ENV": "production", "REDIS_PROD_HOST": "cache.internal"})
    assert s.pool_max_connections == 100
    assert s.host == "cache.internal"


def test_every_variable_is_parsed() -> None:
    s = load(
        {
            "REDIS_HOST": "10.1.2.3",
            "REDIS_PORT": "6380",
            "REDIS_DB": "3",
            "REDIS_USERNAME": "worker",
            "REDIS_PASSWORD": "s3cret",
            "REDIS_TLS": "true",
            "REDIS_TLS_CA_CERT": "-----BEGIN CERTIFICATE-----",
            "REDIS_TLS_INSECURE_SKIP_VERIFY": "no",
            "REDIS_POOL_MAX_CONNECTIONS": "7",
            "REDIS_POOL_TIMEOUT_SECONDS": "0.25",
            "REDIS_BACKOFF_BASE_SECONDS": "0.5",
            "REDIS_BACKOFF_CAP_SECONDS": "8",
            "REDIS_RETRY_ATTEMPTS": "3",
        }
    )
    assert (s.host, s.port, s.db, s.username, s.password) == (
        "10.1.2.3",
        6380,
        3,
        "worker",
        "s3cret",
    )
    assert s.tls and not s.tls_insecure_skip_verify
    assert s.tls_ca_cert == "-----BEGIN CERTIFICATE-----"
    assert (s.pool_max_connections, s.pool_timeout_seconds) == (7, 0.25)
    assert (s.backoff_base_seconds, s.backoff_cap_seconds, s.retry_attempts) == (0.5, 8, 3)


def test_url_is_split_into_parts_and_decoded() -> None:
    s = load({"REDIS_URL": "rediss://app:p%40ss%2Fw@cache.example:6390/2"})
    assert (s.host, s.port, s.db, s.tls) == ("cache.example", 6390, 2, True)
    assert (s.username, s.password) == ("app", "p@ss/w")


def test_contract_variable_wins_over_environment_specific_one() -> None:
    s = load({"REDIS_ENV": "development", "REDIS_DEV_HOST": "dev-host", "REDIS_HOST": "override"})
    assert s.host == "override"


def test_redis_env_selects_separate_credentials() -> None:
    env = {
        "REDIS_DEV_URL": "redis://localhost:6379/0",
        "REDIS_DEV_PASSWORD": "dev-pw",
        "REDIS_PROD_URL": "rediss://prod.cache:6379/0",
        "REDIS_PROD_PASSWORD": "prod-pw",
    }
    dev = load({**env, "REDIS_ENV": "development"})
    prod = load({**env, "REDIS_ENV": "production"})
    assert (dev.host, dev.password, dev.tls) == ("localhost", "dev-pw", False)
    assert (prod.host, prod.password, prod.tls) == ("prod.cache", "prod-pw", True)


def test_dotenv_is_read_but_process_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_HOST=from-file\nREDIS_PORT=6381\n")
    s = load({"REDIS_HOST": "from-process"}, env_file)
    assert (s.host, s.port) == ("from-process", 6381)


@pytest.mark.parametrize(
    ("env", "variable", "accepted"),
    [
        ({"REDIS_POOL_MAX_CONNECTIONS": "-5"}, "REDIS_POOL_MAX_CONNECTIONS", "from 1 to 10000"),
        ({"REDIS_POOL_MAX_CONNECTIONS": "0"}, "REDIS_POOL_MAX_CONNECTIONS", "from 1 to 10000"),
        ({"REDIS_POOL_MAX_CONNECTIONS": "lots"}, "REDIS_POOL_MAX_CONNECTIONS", "integer"),
        ({"REDIS_BACKOFF_CAP_SECONDS": "0.5"}, "REDIS_BACKOFF_CAP_SECONDS", "not below"),
        ({"REDIS_BACKOFF_BASE_SECONDS": "0"}, "REDIS_BACKOFF_BASE_SECONDS", "above 0 up to 3600"),
        ({"REDIS_POOL_TIMEOUT_SECONDS": "301"}, "REDIS_POOL_TIMEOUT_SECONDS", "up to 300"),
        ({"REDIS_ENV": "staging"}, "REDIS_ENV", "development or production"),
        ({"REDIS_URL": "http://cache:6379"}, "REDIS_URL", "redis://, rediss:// or unix://"),
        ({"REDIS_URL": "redis://cache:99999/0"}, "REDIS_URL", "redis://"),
        ({"REDIS_URL": "redis://cache:6379/x"}, "REDIS_URL", "0 to 15"),
        ({"REDIS_URL": "redis:///0"}, "REDIS_URL", "no host"),
        ({"REDIS_PORT": "0"}, "REDIS_PORT", "1 to 65535"),
        ({"REDIS_DB": "16"}, "REDIS_DB", "0 to 15"),
        ({"REDIS_TLS": "maybe"}, "REDIS_TLS", "true or false"),
        ({"REDIS_RETRY_ATTEMPTS": "-1"}, "REDIS_RETRY_ATTEMPTS", "0 to 100"),
        ({"REDIS_ENV": "production"}, "REDIS_URL", "production needs an endpoint"),
        ({"REDIS_DEV_POOL_MAX_CONNECTIONS": "0"}, "REDIS_DEV_POOL_MAX_CONNECTIONS", "1 to 10000"),
    ],
)
def test_bad_value_names_the_variable_and_what_is_accepted(
    env: dict[str, str], variable: str, accepted: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load(env)
    message = str(caught.value)
    assert message.startswith(variable + ":"), message
    assert accepted in message


def test_errors_never_echo_a_password() -> None:
    with pytest.raises(SettingsError) as caught:
        load({"REDIS_URL": "redis://:hunter2-secret@cache:notaport/0"})
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_settings_repr_hides_the_password() -> None:
    s = load({"REDIS_PASSWORD": "hunter2-secret"})
    assert "hunter2" not in repr(s)
    assert "hunter2" not in repr(s.to_contract())


def test_contract_env_round_trips_through_settings() -> None:
    contract = ConnectionContract(
        host="cache",
        port=6380,
        db=1,
        username="u",
        password="a b@c",
        tls=True,
        pool_max_connections=100,
    )
    env = contract.to_env()
    assert set(env) <= set(CONTRACT_KEYS)
    again = load(env).to_contract()
    assert again == contract


def test_url_encodes_credentials_and_redaction_removes_them() -> None:
    url = build_url("cache", 6379, 0, tls=True, username="app", password="p@ss/w:rd")
    assert url == "rediss://app:p%40ss%2Fw%3Ard@cache:6379/0"
    assert redact_url(url) == "rediss://app:***@cache:6379/0"


def test_a_malformed_url_never_echoes_a_piece_of_the_password() -> None:
    # Unencoded, "p@ss:<part>/#" makes urllib read "<part>" as the port and quote it.
    leaked = "9f3c2a7d41b0e6aa"
    with pytest.raises(SettingsError) as caught:
        load({"REDIS_URL": f"redis://:p@ss:{leaked}/#@cache:6379/0"})
    message = str(caught.value)
    assert message.startswith("REDIS_URL:") and "percent-encoded" in message
    assert leaked not in message and "p@ss" not in message


def test_url_query_parameters_map_to_contract_fields_and_redis_py_options() -> None:
    s = load(
        {
            "REDIS_URL": "redis://cache:6379/0?socket_timeout=2&timeout=7&max_connections=12"
            "&health_check_interval=9&client_name=worker&protocol=3"
        }
    )
    assert (s.socket_timeout_seconds, s.pool_timeout_seconds, s.pool_max_connections) == (
        2,
        7,
        12,
    )
    assert s.url_options == {"health_check_interval": 9, "client_name": "worker", "protocol": 3}


def test_an_explicit_contract_variable_wins_over_the_url_query() -> None:
    s = load({"REDIS_URL": "redis://cache/0?max_connections=12", "REDIS_POOL_MAX_CONNECTIONS": "4"})
    assert s.pool_max_connections == 4


def test_unix_url_gives_a_socket_path_and_query_credentials() -> None:
    s = load({"REDIS_URL": "unix:///run/redis/redis.sock?db=4&password=s%40cret"})
    assert (s.unix_socket_path, s.db, s.password) == ("/run/redis/redis.sock", 4, "s@cret")
    assert s.endpoint == "unix:/run/redis/redis.sock"
    assert "s@cret" not in repr(s)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://cache/0?retry_on_timeout=true", "REDIS_RETRY_ATTEMPTS"),
        ("redis://cache/0?flavour=mint", "unknown query parameter 'flavour'"),
        ("redis://cache/0?socket_timeout=soon", "socket_timeout"),
        ("redis://cache/0?socket_timeout=900", "query parameter socket_timeout: expected"),
        ("unix://", "socket path"),
    ],
)
def test_bad_url_queries_are_named(url: str, expected: str) -> None:
    with pytest.raises(SettingsError, match=r"^REDIS_URL") as caught:
        load({"REDIS_URL": url})
    assert expected in str(caught.value)


def test_a_bad_query_value_never_echoes_the_password() -> None:
    with pytest.raises(SettingsError) as caught:
        load({"REDIS_URL": "redis://:hunter2-secret@cache/0?socket_timeout=hunter2-secret"})
    assert "hunter2" not in str(caught.value)


def test_password_file_wins_and_is_read_each_time(tmp_path: Path) -> None:
    secret = tmp_path / "REDIS_PASSWORD"
    secret.write_text("first\n")
    s = load({"REDIS_PASSWORD": "from-env", "REDIS_PASSWORD_FILE": str(secret)})
    assert s.read_password() == "first"
    secret.write_text("second")
    assert s.read_password() == "second"
