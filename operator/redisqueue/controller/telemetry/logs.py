"""Log lines for people (text) or for a pipeline (JSON, one object per line).

Every line about a RedisQueue names it: the operator's own lines carry
``extra=about(namespace, name)``, kopf's lines carry kopf's ``k8s_ref``. In text, a kopf line
gets the ``namespace/name:`` prefix the operator's own messages already start with; in JSON,
both become the ``namespace`` and ``name`` fields. Messages never hold credentials (see the
security rules in the design), so the formatters print them as they are.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: The LogRecord attribute that names the RedisQueue a line is about.
RECORD_KEY: Final = "redisqueue"


def about(namespace: str, name: str) -> dict[str, Any]:
    """``extra=`` for a log call about one RedisQueue."""
    return {RECORD_KEY: {"namespace": namespace, "name": name}}


def subject(record: logging.LogRecord) -> tuple[str, str] | None:
    """(namespace, name) of the RedisQueue a record is about, from ours or kopf's extra."""
    ours = getattr(record, RECORD_KEY, None)
    if isinstance(ours, Mapping):
        return str(ours.get("namespace") or ""), str(ours.get("name") or "")
    ref = getattr(record, "k8s_ref", None)  # kopf's per-object loggers
    if isinstance(ref, Mapping) and ref.get("name"):
        return str(ref.get("namespace") or ""), str(ref["name"])
    return None


class TextFormatter(logging.Formatter):
    """The classic line; kopf's per-object lines get the ``namespace/name:`` prefix."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        about_ = subject(record)
        if about_ is not None and not hasattr(record, RECORD_KEY):
            namespace, name = about_
            record.message = f"{namespace}/{name}: {record.message}"
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, namespace and name."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        about_ = subject(record)
        if about_ is not None:
            entry["namespace"], entry["name"] = about_
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class RetriedRequestsAreWarnings(logging.Filter):
    """kopf logs each failed attempt of an API request at ERROR, also when it retries it (a
    429 "storage is (re)initializing" while a new CRD's cache fills, a dropped connection).
    Such an attempt is a warning; the attempt after which kopf gives up ("escalating") stays
    an error, so a line at ERROR is one that needs someone."""

    RETRIED: Final = ("; will retry:", "; will re-authenticate:")

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.ERROR
            and record.name.startswith("kopf.")
            and any(mark in record.getMessage() for mark in self.RETRIED)
        ):
            record.levelno, record.levelname = (
                logging.WARNING,
                logging.getLevelName(logging.WARNING),
            )
        return True


def configure(level: str, log_format: LogFormat) -> None:
    """Route every logger (ours, kopf's, aiohttp's) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RetriedRequestsAreWarnings())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
