"""Masking of credentials in text that goes to logs and error messages.

Camera URLs (``rtsp://user:password@host/...``), broker URLs and HTTP URLs often carry a password; so may a
config dump (``password=...``). Every log or error message that could contain a URL or a secret is passed through
:func:`redact` first. Secrets that appear without a URL around them (a SASL password from the config) are
registered once with :func:`register_secret` and are then masked wherever they occur.
"""

from __future__ import annotations

import re
import threading

__all__ = ["redact", "register_secret", "MASK"]

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


def register_secret(value: str | None) -> None:
    """Mask ``value`` in every later :func:`redact` output (e.g. a SASL password read from the config).

    ``None`` and empty strings are ignored. Registered values are kept in memory for the life of the process.
    """
    if value:
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
