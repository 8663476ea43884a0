"""Kubernetes label-selector syntax (``k=v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``,
``k notin (a,b)``, comma-separated) into predicates over a label map, for health answers
scoped with ``?labelSelector=``. Pure."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping


class SelectorError(ValueError):
    """A label selector this server cannot read; the message says what is accepted."""


_SET_RULE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)\s*$")
_LABEL_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_SELECTOR_LENGTH = 1024


def parse_selector(text: str) -> list[Callable[[Mapping[str, str]], bool]]:
    """Kubernetes label-selector syntax into predicates over a label map."""
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"labelSelector: longer than {MAX_SELECTOR_LENGTH} characters")
    rules: list[Callable[[Mapping[str, str]], bool]] = []
    for part in _split_selector(text):
        rules.append(_parse_requirement(part))
    return rules


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _value(text: str) -> str:
    value = text.strip()
    if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise SelectorError(f"labelSelector: {value[:64]!r} is not a label value")
    return value


def _key(text: str) -> str:
    key = text.strip()
    if not _LABEL_KEY.fullmatch(key):
        raise SelectorError(
            "labelSelector: expected key=value, key!=value, key, !key, key in (a,b) or "
            "key notin (a,b), separated by commas"
        )
    return key


def _parse_requirement(part: str) -> Callable[[Mapping[str, str]], bool]:
    if match := _SET_RULE.fullmatch(part):
        key, op = _key(match.group(1)), match.group(2)
        values = frozenset(_value(v) for v in match.group(3).split(",") if v.strip())
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in part:
            raw_key, value = part.split(op, 1)
            key, value = _key(raw_key), _value(value)
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if part.startswith("!"):
        key = _key(part[1:])
        return lambda labels: key not in labels
    key = _key(part)
    return lambda labels: key in labels
