"""Where the broker is and how to trust it: the broker URL and the TLS context.

One builder for everything that talks to the broker (the link, ``edge-agent doctor``, the
agent's configuration check), so that a URL or a certificate the link refuses is refused
the same way, with the same message, everywhere. Both raise :class:`sync.errors.LinkError`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sync.errors import LinkError

__all__ = ["BrokerAddress", "parse_broker_url", "tls_context"]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; anything else is a LinkError."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise LinkError(f"broker URL must be mqtt://host[:port] or mqtts://host[:port]: {url!r}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise LinkError(f"bad port in broker URL {url!r}") from exc
    return BrokerAddress(parts.hostname, port, tls)


def tls_context(ca_file: Path | None = None, cert_file: Path | None = None,
                key_file: Path | None = None) -> ssl.SSLContext:
    """A verifying client context: ``ca_file`` (else the system's CAs) and, when given,
    the client certificate (``key_file`` may be omitted if the key is in ``cert_file``)."""
    try:
        context = ssl.create_default_context(
            cafile=str(ca_file) if ca_file is not None else None
        )
        if cert_file is not None:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise LinkError(f"TLS setup failed: {exc}") from exc
    return context
