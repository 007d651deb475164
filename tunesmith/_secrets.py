"""Config values that look like secrets are stored as given and masked wherever they are shown."""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(r"(key|token|secret|passw(or)?d|credential)", re.IGNORECASE)
_URL_AUTH = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")


def is_secret_key(key: str) -> bool:
    """``api_key``, ``TOKEN``, ``db_password``, ``client_secret``... (the key's last path part counts)."""
    return bool(_SECRET_KEY.search(key.rsplit("/", 1)[-1]))


def mask_value(key: str, value: Any) -> Any:
    if is_secret_key(key) and value is not None and not isinstance(value, (bool, dict)):
        return MASK
    if isinstance(value, str) and "@" in value:
        return _URL_AUTH.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", value)
    return value


def mask(config: Any, _key: str = "") -> Any:
    """A copy of ``config`` (nested dicts and lists) with secret-looking values replaced by ``***``: values
    of keys containing key/token/secret/password/credential, and the password in ``scheme://user:pw@host``."""
    if isinstance(config, dict):
        return {k: mask(v, str(k)) if isinstance(v, (dict, list)) else mask_value(str(k), v)
                for k, v in config.items()}
    if isinstance(config, list):
        return [mask(v, _key) if isinstance(v, (dict, list)) else mask_value(_key, v) for v in config]
    return mask_value(_key, config)
