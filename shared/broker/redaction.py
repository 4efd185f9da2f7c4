"""Broker URLs without their credentials, for logs, error messages and broker stats.

Its own module, with no dependencies, so every transport (and every caller that logs a URL)
can import it without importing the package that chooses transports.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """``url`` without user name and password, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable broker url>"
    if parts.username is None and parts.password is None:
        return url
    netloc = f"***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_user(url: str) -> str | None:
    """The user name in ``url`` (decoded), or None: what the AMQP ``user_id`` property of this
    connection's publishes must say (RabbitMQ refuses any other)."""
    try:
        name = urlsplit(url).username
    except ValueError:
        return None
    return unquote(name) if name else None


def scrub_secrets(text: str, url: str) -> str:
    """Remove the URL's credentials from ``text`` (an error message from a library)."""
    out = text.replace(url, redact_url(url))
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    for secret in (parts.password, parts.username):
        if secret:
            for form in {secret, unquote(secret)}:
                out = out.replace(form, "***")
    return out
