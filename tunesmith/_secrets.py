"""Config values that look like secrets are stored as given and masked wherever they are shown.

The store keeps every value as the user gave it (the trial needs its API key). Every output reads a trial
through ``shown(trial)``: the progress display, the file loggers' ``params.json``, TensorBoard hparams,
MLflow params and tags, the HTML report, ``tunesmith show``/``run`` and ``ResultSet.dataframe()``. It masks
the config (``mask``) and the trial's error message, which may quote the config, by replacing the secret
values it knows from that config (``mask_text``). A user's own callback gets the raw view, as the
training function does.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

MASK = "***"
# a key whose last part contains one of these holds a secret (``api_key``, ``DB_PASSWORD``, ``pwd``...)
_SECRET_KEY = re.compile(r"(key|token|secret|passw(or)?d|passphrase|pwd|credential|authorization|bearer)",
                         re.IGNORECASE)
# ``scheme://user:password@host`` (the password may hold '/' or '@': it ends at the '@' before the host)
# and ``scheme://TOKEN@host``. The host is what follows the last '@' before the path.
_URL_AUTH = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/?#@:]*)(?::(?P<pw>\S*?))?"
                       r"@(?=[^\s/?#@]*(?:[\s/?#]|$))")
_BEARER = re.compile(r"(?P<word>\bbearer\s+)(?P<token>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
# A known secret shorter than this is not replaced inside free text (error messages): replacing "42" in a
# traceback would mangle every line number; such a value is still masked in the config itself.
MIN_TEXT_SECRET = 4

T = TypeVar("T")


def is_secret_key(key: str) -> bool:
    """``api_key``, ``TOKEN``, ``db_password``, ``client_secret``, ``pwd``... (the key's last path part
    counts)."""
    return bool(_SECRET_KEY.search(str(key).rsplit("/", 1)[-1]))


def is_secret_path(path: Iterable[Any]) -> bool:
    """A value at this key path is secret: some key on the way is (a dict under ``credentials`` is all
    secret)."""
    return any(is_secret_key(str(part)) for part in path)


def _mask_url(match: re.Match[str]) -> str:
    if match["pw"] is not None:
        return f"{match['scheme']}{match['user']}:{MASK}@"
    return f"{match['scheme']}{MASK}@"  # https://TOKEN@host


def mask_string(text: str) -> str:
    """``text`` with URL passwords and tokens (``scheme://user:pw@host``, ``https://TOKEN@host``) and
    ``Bearer <token>`` replaced by ``***``."""
    if "@" in text:
        text = _URL_AUTH.sub(_mask_url, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: f"{m['word']}{MASK}", text)
    return text


def mask_value(key: str, value: Any, secret: bool = False) -> Any:
    """One leaf value at ``key``: ``***`` under a secret-looking key (or when ``secret``: an enclosing key
    is), else a string with its URL passwords and bearer tokens masked. None and booleans stay (``use_token:
    true`` tells nothing)."""
    if (secret or is_secret_key(key)) and value is not None and not isinstance(value, bool):
        return MASK
    if isinstance(value, str):
        return mask_string(value)
    return value


def mask(config: Any, _key: str = "", _secret: bool = False) -> Any:
    """A copy of ``config`` (nested dicts and lists) with secret-looking values replaced by ``***``: every
    value under a key containing key/token/secret/password/pwd/passphrase/credential (a dict or list there
    is masked whole), passwords and tokens in URLs, and ``Bearer`` tokens."""
    if isinstance(config, dict):
        return {k: mask(v, str(k), _secret or is_secret_key(str(k))) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [mask(v, _key, _secret) for v in config]
    return mask_value(_key, config, _secret)


def mask_at(path: Sequence[Any], value: Any) -> Any:
    """``value`` masked as it would be at this key path of a config (``("db", "password")``)."""
    return mask(value, str(path[-1]) if path else "", is_secret_path(path))


def secret_strings(config: Any) -> set[str]:
    """The raw secret values ``mask`` hides in ``config``, as text: what ``mask_text`` must find in an
    error message that quotes the config."""
    found: set[str] = set()

    def walk(value: Any, key: str, secret: bool) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k), secret or is_secret_key(str(k)))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key, secret)
        elif (secret or is_secret_key(key)) and value is not None and not isinstance(value, bool):
            found.add(str(value))
        elif isinstance(value, str):
            for m in _URL_AUTH.finditer(value):
                found.add(m["pw"] if m["pw"] is not None else m["user"])
            for m in _BEARER.finditer(value):
                found.add(m["token"])

    walk(config, "", False)
    return {s for s in found if s and s != MASK}


def mask_text_at(path: Iterable[Any], text: str, *values: Any) -> str:
    """``text`` (an error message that quotes ``values``, found at this key path of a config or space) with
    those values masked when the path is secret (a key on the way looks like one)."""
    if not is_secret_path(path):
        return text
    return mask_text(text, secret_strings({"secret": list(values)})) or text


def mask_text(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """``text`` (an error message, a traceback) with each of ``secrets`` (as written, as ``repr`` and as
    JSON write it) replaced by ``***``, then URL passwords and bearer tokens masked as in config values."""
    if not text:
        return text
    forms: set[str] = set()
    for s in secrets:
        if len(s) >= MIN_TEXT_SECRET:
            escaped = s.encode("unicode_escape").decode("ascii")  # as repr writes it, in either quotes
            forms.update((s, repr(s)[1:-1], json.dumps(s)[1:-1], escaped.replace("'", "\\'"),
                          escaped.replace('"', '\\"')))
    for form in sorted(forms, key=len, reverse=True):  # longest first: a secret may contain another
        if form in text:
            text = text.replace(form, MASK)
    return mask_string(text)


def shown(trial: T) -> T:
    """A copy of ``trial`` (a ``TrialView`` or ``TrialResult``) as every output shows it: its config masked,
    and its error message with the config's secret values masked. The store keeps the raw values."""
    config = getattr(trial, "config", None)
    error = getattr(trial, "error", None)
    changes: dict[str, Any] = {"config": mask(config) if isinstance(config, dict) else config}
    if error:
        changes["error"] = mask_text(error, secret_strings(config))
    replace = getattr(trial, "__replace__", None)  # a TrialView (a Record); a TrialResult is a dataclass
    return replace(**changes) if replace is not None else dataclasses.replace(trial, **changes)  # type: ignore[type-var]
