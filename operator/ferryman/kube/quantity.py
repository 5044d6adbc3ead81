"""Kubernetes resource quantities compared by value, as the API server normalises them
(``cpu: 1`` is stored as "1", ``0.5`` as "500m", "1000m" as "1"), with the kubernetes
client's parser (``kubernetes.utils.quantity.parse_quantity``: the suffixes of
apimachinery's resource.Quantity, decimal and binary)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity


def quantity(value: Any) -> Decimal | None:
    """``value`` (int, float or string) as a Decimal, or None when it is no quantity."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, ArithmeticError):
        return None


def same_quantity(observed: Any, desired: Any) -> bool:
    """Whether two quantities have the same value; values that are no quantity are
    compared as they are (equal and of the same JSON type)."""
    o, d = quantity(observed), quantity(desired)
    if o is None or d is None:
        return type(observed) is type(desired) and bool(observed == desired)
    return o == d
