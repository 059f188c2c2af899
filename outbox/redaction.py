"""Masking for what goes into logs: never a full recipient address."""

from collections.abc import Iterable
from typing import Any


def mask_address(address: Any) -> str:
    """Return `d***@example.com` for `doctor@example.com`, and `***` for anything that is not an address."""
    if not isinstance(address, str):  # a row's JSON written around enqueue_email's checks
        return "***"
    local, sep, domain = address.rpartition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_addresses(addresses: Iterable[Any]) -> str:
    return ", ".join(mask_address(a) for a in addresses)
