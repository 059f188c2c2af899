"""Masking for what goes into logs: never a full recipient address."""

from collections.abc import Iterable


def mask_address(address: str) -> str:
    """Return `d***@example.com` for `doctor@example.com`."""
    local, sep, domain = address.rpartition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_addresses(addresses: Iterable[str]) -> str:
    return ", ".join(mask_address(a) for a in addresses)
