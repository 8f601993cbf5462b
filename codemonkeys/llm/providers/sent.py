"""Whether a failed request can have reached the provider (and so been billed)."""

from __future__ import annotations

# httpx (and the SDKs' bundled copies) name the failures that happen before a byte is sent
# this way; matching by name keeps this independent of which httpx the SDK ships.
_BEFORE_SENDING = ("ConnectError", "ConnectTimeout", "UnsupportedProtocol", "InvalidURL")


def never_sent(exc: BaseException) -> bool:
    """True when the chain of ``exc`` shows the connection was never made."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ in _BEFORE_SENDING or isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
