"""Masking of credentials in text that goes to logs and error messages.

Camera URLs (``rtsp://user:password@host/...``), broker URLs and HTTP URLs often carry a password; so may a
config dump (``password=...``). Every log or error message that could contain a URL or a secret is passed through
:func:`redact` first. Secrets that appear without a URL around them (a SASL password from the config) are
registered once with :func:`register_secret` and are then masked wherever they occur.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["redact", "register_secret", "MASK", "MIN_SECRET_LENGTH", "RedactingFilter", "redact_logging"]

MASK = "***"

# scheme://user:password@  ->  scheme://user:***@   (password may be empty; it ends at the first "@")
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<password>[^@\s]*)@")
# password=..., sasl_plain_password: ..., "token": "..."  (key = value pairs in query strings, configs, reprs)
_KEY_VALUE = re.compile(
    r"(?P<key>\b[\w.\-]*(?:password|passwd|pwd|secret|token)[\w.\-]*[\"']?\s*[=:]\s*)(?P<quote>[\"']?)"
    r"(?P<value>[^\s&,;\"'}]+)",
    re.IGNORECASE,
)

_secrets: set[str] = set()
_lock = threading.Lock()


# shorter values would mask ordinary words everywhere; URL and key=value forms of them are still masked
MIN_SECRET_LENGTH = 4


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every later :func:`redact` output (e.g. a SASL password read from the config).

    ``None``, empty strings and values shorter than :data:`MIN_SECRET_LENGTH` characters are ignored (a password
    ``pw`` inside ``rtsp://user:pw@host`` is still masked there, by the URL rule). Registered values are kept in
    memory for the life of the process.
    """
    if value and len(str(value)) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(str(value))


def redact(text: object) -> str:
    """``text`` (any object, converted with ``str``) with credentials replaced by ``***``.

    Masks the password of ``scheme://user:password@host`` URLs (``rtsp``, ``http(s)``, ``kafka``, ``sasl``...),
    the value of ``password=`` / ``secret=`` / ``token=`` style pairs, and every value registered with
    :func:`register_secret`. The user name is kept so that messages still say which account failed.

    Example: ``redact("rtsp://admin:hunter2@10.0.0.5/live")`` -> ``"rtsp://admin:***@10.0.0.5/live"``.
    """
    out = str(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        out = out.replace(secret, MASK)
    out = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}:{MASK}@", out)
    out = _KEY_VALUE.sub(lambda m: f"{m.group('key')}{m.group('quote')}{MASK}", out)
    return out


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record through :func:`redact`: its message (arguments merged in) and
    its traceback text. Attached to the handlers of the root logger by :func:`redact_logging`, it covers the log
    lines of every library (PyAV, kafka-python, ...), not only of streamad's own modules."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_logging(logger: logging.Logger | None = None) -> None:
    """Attach one :class:`RedactingFilter` to every handler of ``logger`` (default: the root logger). Idempotent."""
    logger = logger or logging.getLogger()
    for handler in logger.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
