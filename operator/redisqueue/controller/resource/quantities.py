"""Kubernetes quantities ("1Gi", "500m", "1e3"): their syntax and their value. Pure."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

#: resource.Quantity's own syntax, as Kubernetes publishes it for int-or-string quantities.
QUANTITY_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<binary>[KMGTPE]i)|(?P<decimal>[numkMGTPE])|[eE](?P<exponent>[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)))?$"
)
_BINARY_SUFFIX: Final = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SUFFIX: Final = {
    "n": -9,
    "u": -6,
    "m": -3,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}


def parse_quantity(text: str) -> Decimal:
    """Return the value of a Kubernetes quantity ("1Gi", "500m", "1e3") as a Decimal.

    Raises ValueError for anything ``resource.ParseQuantity`` would reject.
    """
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    try:
        value = Decimal(match["number"])
        if match["binary"]:
            value *= Decimal(1024) ** _BINARY_SUFFIX[match["binary"]]
        elif match["decimal"]:
            value *= Decimal(10) ** _DECIMAL_SUFFIX[match["decimal"]]
        elif match["exponent"]:
            value *= Decimal(10) ** Decimal(match["exponent"])
    except InvalidOperation as exc:  # an exponent too large to represent
        raise ValueError(f"{text!r} is not a Kubernetes quantity") from exc
    return -value if match["sign"] == "-" else value
