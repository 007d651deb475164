"""Config values that look like secrets are stored as given and masked wherever they are shown (and the text a
trial reports: ``mask_result``).

The store keeps every value as the user gave it (the trial needs its API key). Every output reads a trial
through ``shown(trial)``: the progress display, the file loggers' ``params.json``, TensorBoard hparams,
MLflow params and tags, the HTML report, ``tunesmith show``/``run`` and ``ResultSet.dataframe()``. It masks
the config (``mask``) and the trial's error message, which may quote the config, by replacing the secret
values it knows from that config (``mask_text``). A user's own callback gets the raw view, as the
training function does.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import string
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

MASK = "***"
# A key holds a secret when its last part contains one of these anywhere (``DB_PASSWORD``, ``clientsecret``,
# ``pwd``): every value under it is masked, numbers too ...
_SECRET_KEY = re.compile(r"(secret|passw(or)?d|passphrase|pwd|credential|authorization|bearer|apikey|privatekey)",
                         re.IGNORECASE)
# ... or when one of its words (split at ``_ - .``, spaces, digits and case changes: ``apiKey``, ``OPENAI_API_KEY``,
# ``hfToken``) ends with key(s) or token(s): then text under it is masked and numbers shown (``max_new_tokens: 1024``,
# ``key_dim: 64`` are sizes; ``tokenizer`` and ``keyword`` are not such words)
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_KEY_WORD = ("key", "keys", "token", "tokens")
STRONG, WEAK = 2, 1  # how secret a key looks (0: not)
# ``scheme://user:password@host`` (the password may hold '/' or '@': it ends at the '@' before the host)
# and ``scheme://TOKEN@host``. The host is what follows the last '@' before the path. :func:`_url_auths` finds
# them as ``re.finditer`` would find this pattern, in linear time: the pattern itself rescans a long run of letters
# from each of its positions for a "://" (a 50 KB DNA sequence in a config: a second per call; 2 MB, extrapolated:
# half an hour), and each "://" for a valid '@' to the end of the text.
#   (?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s/?#@:]*)(?::(?P<pw>\S*?))?@(?=[^\s/?#@]*(?:[\s/?#]|$))
_LETTERS = frozenset(string.ascii_letters)
_SCHEME_CHARS = _LETTERS | frozenset(string.digits + "+.-")
_USER_END = re.compile(r"[\s/?#@:]")
_AT_OR_SPACE = re.compile(r"[@\s]")
_HOST_END = re.compile(r"[\s/?#@]")
# "Bearer" not inside a word, "_" counting as a separator (\bbearer did not: "loss_Bearer <token>" was left); the
# check on the letter before comes after the word, as fast as \bbearer (a lookbehind before it is slower)
_BEARER = re.compile(r"(?P<word>bearer(?<![^\W_]bearer)\s+)(?P<token>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
# A known secret shorter than this is not replaced inside free text (error messages): replacing "42" in a
# traceback would mangle every line number; such a value is still masked in the config itself.
MIN_TEXT_SECRET = 4

T = TypeVar("T")


@functools.lru_cache(maxsize=4096)  # the same config keys are looked at for every trial shown
def secrecy(key: str) -> int:
    """How secret the key looks (its last path part counts): ``STRONG`` (``db_password``, ``client_secret``,
    ``pwd``...: every value masked), ``WEAK`` (a word ending in key(s)/token(s): ``api_key``, ``TOKEN``,
    ``hfToken``: text masked, numbers shown), or 0."""
    last = str(key).rsplit("/", 1)[-1]
    if _SECRET_KEY.search(last):
        return STRONG
    return WEAK if any(w.lower().endswith(_KEY_WORD) for w in _WORDS.findall(last)) else 0


def is_secret_key(key: str) -> bool:
    """``api_key``, ``TOKEN``, ``db_password``, ``client_secret``, ``pwd``... (the key's last path part
    counts; see :func:`secrecy`)."""
    return secrecy(key) > 0


def is_secret_path(path: Iterable[Any]) -> bool:
    """A value at this key path may be secret: some key on the way looks so (a dict under ``credentials`` is all
    secret)."""
    return any(is_secret_key(str(part)) for part in path)


def _path_secrecy(path: Iterable[Any]) -> int:
    return max((secrecy(str(part)) for part in path), default=0)


def _hidden(value: Any, level: int) -> bool:
    """A leaf value under a key of this secrecy is masked: not None or a bool, and text unless the key is STRONG."""
    if not level or value is None or isinstance(value, bool):
        return False
    return level >= STRONG or not isinstance(value, (int, float))


def _host_follows(text: str, at: int) -> bool:
    """The '@' at ``at`` ends a URL's user part: what follows it up to whitespace, '/', '?', '#' or the end holds
    no other '@'."""
    end = _HOST_END.search(text, at + 1)
    return end is None or text[end.start()] != "@"


def _url_auths(text: str) -> Iterator[tuple[int, int, str, str, str | None]]:
    """``(start, end, scheme, user, password)`` of each ``scheme://user:password@`` (password None for
    ``scheme://TOKEN@``) in ``text``, left to right, as the pattern above matches them; each character is looked
    at a bounded number of times."""
    floor = 0  # where the last match ended: the next one starts here or later
    colons = text.find("://")
    while colons >= 0:
        start = colons
        while start > floor and text[start - 1] in _SCHEME_CHARS:  # the run of scheme characters before "://"
            start -= 1
        while start < colons and text[start] not in _LETTERS:  # a scheme starts with a letter
            start += 1
        next_from = colons + 1
        if start < colons:
            user_from = colons + 3
            stop = _USER_END.search(text, user_from)
            user_end = len(text) if stop is None else stop.start()
            mark = text[user_end] if user_end < len(text) else ""
            if mark == ":":  # a password: up to the first '@' that a host follows, never past whitespace
                at = user_end + 1
                while (found := _AT_OR_SPACE.search(text, at)) is not None and text[found.start()] == "@":
                    if _host_follows(text, found.start()):
                        break
                    at = found.start() + 1
                if found is not None and text[found.start()] == "@":
                    end = found.start() + 1
                    yield start, end, text[start:colons + 3], text[user_from:user_end], text[user_end + 1:end - 1]
                    floor = next_from = end
                else:  # no such '@' before whitespace: no "://" before that whitespace can match either
                    next_from = len(text) if found is None else found.start()
            elif mark == "@" and _host_follows(text, user_end):
                yield start, user_end + 1, text[start:colons + 3], text[user_from:user_end], None
                floor = next_from = user_end + 1
        colons = text.find("://", next_from)


def _mask_urls(text: str) -> str:
    parts: list[str] = []
    done = 0
    for start, end, scheme, user, password in _url_auths(text):
        # https://user:***@host, https://***@host (a token)
        parts += [text[done:start], scheme, MASK if password is None else f"{user}:{MASK}", "@"]
        done = end
    return "".join(parts) + text[done:] if parts else text


def _may_hold_bearer(text: str) -> bool:
    """Whether ``text`` may hold ``Bearer`` in any case (``BeArEr``, as ``_BEARER`` matches it): a text without a
    'b' is not lowercased."""
    return ("b" in text or "B" in text) and "bearer" in text.lower()


def may_hold_credential(text: str) -> bool:
    """Whether ``text`` may hold a URL's password or token (``scheme://...@``) or a ``Bearer <token>``: substring
    tests, several times cheaper than one compiled pattern on a metric's name."""
    return ("@" in text and "://" in text) or _may_hold_bearer(text)


def mask_string(text: str) -> str:
    """``text`` with URL passwords and tokens (``scheme://user:pw@host``, ``https://TOKEN@host``) and
    ``Bearer <token>`` replaced by ``***``."""
    if "@" in text and "://" in text:
        text = _mask_urls(text)
    if _may_hold_bearer(text):
        text = _BEARER.sub(lambda m: f"{m['word']}{MASK}", text)
    return text


# a result's names repeat at every report: each is looked at once
_mask_name_credentials = functools.lru_cache(maxsize=4096)(mask_string)


def mask_value(key: str, value: Any, secret: int = 0) -> Any:
    """One leaf value at ``key``: ``***`` under a secret-looking key (``secret``: an enclosing key's
    :func:`secrecy`) unless it is a number under a WEAK one, else a string with its URL passwords and bearer
    tokens masked. None and booleans stay (``use_token: true`` tells nothing)."""
    if _hidden(value, max(secret, secrecy(key))):
        return MASK
    if isinstance(value, str):
        return mask_string(value)
    return value


def mask(config: Any, _key: str = "", _secret: int = 0) -> Any:
    """A copy of ``config`` (nested dicts and lists) with secret-looking values replaced by ``***``: under a key
    containing secret/password/pwd/passphrase/credential every value (a dict or list there whole), under a key
    with a word ending in key(s)/token(s) every text (:func:`secrecy`); passwords and tokens in URLs, and
    ``Bearer`` tokens."""
    if isinstance(config, dict):
        return {k: mask(v, str(k), max(_secret, secrecy(str(k)))) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [mask(v, _key, _secret) for v in config]
    return mask_value(_key, config, _secret)


def mask_at(path: Sequence[Any], value: Any) -> Any:
    """``value`` masked as it would be at this key path of a config (``("db", "password")``)."""
    return mask(value, str(path[-1]) if path else "", _path_secrecy(path))


def hidden_at(path: Sequence[Any], value: Any) -> bool:
    """Whether a config shows ``value`` at this key path masked because of the path (a secret, or text under a
    key(s)/token(s) key): a plot then tells such values apart (``*** #1``) instead of drawing them."""
    return mask_at(path, value) != mask(value)


def secret_strings(config: Any) -> set[str]:
    """The raw secret values ``mask`` hides in ``config``, as text: what ``mask_text`` must find in an
    error message that quotes the config. A list of configs gives all of theirs (a trial's current config and
    those it had before PBT exploits: ``Store.past_configs``)."""
    found: set[str] = set()

    def walk(value: Any, key: str, secret: int) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k), max(secret, secrecy(str(k))))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key, secret)
        elif _hidden(value, max(secret, secrecy(key))):
            found.add(str(value))
        elif isinstance(value, str):
            if "@" in value and "://" in value:
                found.update(user if password is None else password for *_, user, password in _url_auths(value))
            for m in _BEARER.finditer(value):
                found.add(m["token"])

    walk(config, "", 0)
    return {s for s in found if s and s != MASK}


def mask_text_at(path: Iterable[Any], text: str, *values: Any) -> str:
    """``text`` (an error message that quotes ``values``, found at this key path of a config or space) with
    those values masked as a config shows them there: whole when the path is secret (a key on the way looks like
    one), else their URL passwords and tokens."""
    level = _path_secrecy(path)
    key = "secret" if level >= STRONG else "token" if level else ""
    return mask_text(text, secret_strings({key: list(values)})) or text


def mask_text(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """``text`` (an error message, a traceback) with each of ``secrets`` (as written, as ``repr`` and as
    JSON write it) replaced by ``***``, then URL passwords and bearer tokens masked as in config values."""
    if not text:
        return text
    for form in _text_forms(secrets if isinstance(secrets, frozenset) else frozenset(secrets)):
        if form in text:
            text = text.replace(form, MASK)
    return mask_string(text)


@functools.lru_cache(maxsize=256)  # a trial's secrets are looked for in each of its results' names and texts
def _text_forms(secrets: frozenset[str]) -> tuple[str, ...]:
    """Each of ``secrets`` as written, as ``repr`` and as JSON write it; longest first (a secret may contain
    another)."""
    forms: set[str] = set()
    for s in secrets:
        if len(s) >= MIN_TEXT_SECRET:
            escaped = s.encode("unicode_escape").decode("ascii")  # as repr writes it, in either quotes
            forms.update((s, repr(s)[1:-1], json.dumps(s)[1:-1], escaped.replace("'", "\\'"),
                          escaped.replace('"', '\\"')))
    return tuple(sorted(forms, key=len, reverse=True))


@functools.lru_cache(maxsize=4096)  # a result's names repeat at every report: each is looked at once
def result_secrecy(key: str) -> int:
    """How secret a reported result's name looks: the most secret of its ``/``-joined parts, as a config value is
    masked by every key on its path (a nested dict a trial reports is stored flat: ``{"credentials": {"pass":
    ...}}`` as ``credentials/pass``, ``{"db_password": {"value": ...}}`` as ``db_password/value``)."""
    key = str(key)
    return max(map(secrecy, key.split("/"))) if "/" in key else secrecy(key)


def mask_result(metrics: dict[str, Any], secrets: Iterable[str] = ()) -> dict[str, Any]:
    """Reported metrics as every output shows them: a text value under a secret-looking key (any part of its
    ``/``-joined name: :func:`result_secrecy`) ``***``, other text with ``secrets`` (the trial's config's secret
    values, :func:`secret_strings`), URL passwords and bearer tokens masked; numbers as reported. A name that
    quotes one of ``secrets`` (``f"loss_{config['api_key']}"``) is masked as text is (:func:`mask_name`).
    ``metrics`` itself when nothing changes (the usual: numbers only, names without a secret)."""
    secrets = frozenset(secrets)
    out: dict[str, Any] | None = None
    for key, value in metrics.items():
        name = mask_name(key, secrets)
        masked = mask_reported_text(key, value, secrets) if isinstance(value, str) else value
        if out is None and (name != key or masked is not value):
            out = {}
            for k, v in metrics.items():  # the names before this one, in order
                if k == key:
                    break
                out[k] = v
        if out is not None:
            out[name] = masked
    return metrics if out is None else out


def mask_name(name: str, secrets: Iterable[str]) -> str:
    """A reported metric's name with each of ``secrets`` (its trial's config's secret values) it quotes, and URL
    passwords and bearer tokens, masked as in text (:func:`mask_text`); the name itself when it quotes none."""
    if secrets:
        return mask_text(name, secrets) or name
    return _mask_name_credentials(name)


def mask_reported_text(key: str, value: str, secrets: Iterable[str] = ()) -> str:
    """One text result at ``key`` (its flat name: ``credentials/pass``) as :func:`mask_result` shows it."""
    return MASK if value and result_secrecy(key) else (mask_text(value, secrets) or value)


def may_need_mask(json_text: str) -> bool:
    """Whether a result's JSON text may hold a text value (JSON writes ``":"``, or ``": "``, only before one) or a
    name with a credential (:func:`may_hold_credential`): a result with neither needs no :func:`mask_result`, nor
    decoding, when its config has no secret."""
    return '":"' in json_text or '": "' in json_text or may_hold_credential(json_text)


def shown(trial: T) -> T:
    """A copy of ``trial`` (a ``TrialView`` or ``TrialResult``) as every output shows it: its config masked,
    its error message with the config's secret values masked, and its results' text (:func:`mask_result`). The
    store keeps the raw values."""
    config = getattr(trial, "config", None)
    error = getattr(trial, "error", None)
    changes: dict[str, Any] = {"config": mask(config) if isinstance(config, dict) else config}
    secrets: set[str] | None = None
    if error:
        secrets = secret_strings(config)
        changes["error"] = mask_text(error, secrets)
    for name in ("last_result", "metrics"):
        value = getattr(trial, name, None)
        metrics = value if isinstance(value, dict) else getattr(value, "metrics", None)  # a dict, or a Result
        if isinstance(metrics, dict) and metrics:  # a name may quote a secret too (``loss_<api_key>``)
            secrets = secret_strings(config) if secrets is None else secrets
            masked = mask_result(metrics, secrets)
            if masked is not metrics:
                changes[name] = masked if value is metrics else value.__replace__(  # type: ignore[union-attr]
                    metrics=masked, _json=None)
    replace = getattr(trial, "__replace__", None)  # a TrialView (a Record); a TrialResult is a dataclass
    return replace(**changes) if replace is not None else dataclasses.replace(trial, **changes)  # type: ignore[type-var]


R = TypeVar("R")  # a trial.Result


def shown_results(config: Any, results: list[R]) -> list[R]:
    """``results`` of a trial with ``config`` as every output shows them (:func:`mask_result`: the text they hold
    and names that quote a secret of the config masked); the same list when none holds text and the config has no
    secret (the usual), found from their JSON text without decoding (:func:`may_need_mask`). ``config`` may be a list
    of configs (:func:`secret_strings`): the trial's and those it had before PBT exploits."""
    secrets = secret_strings(config)
    if not secrets and all((j := getattr(r, "_json", None)) is not None and not may_need_mask(j) for r in results):
        return results
    out = []
    for r in results:
        metrics = r.metrics  # type: ignore[attr-defined]
        masked = mask_result(metrics, secrets)
        out.append(r if masked is metrics else r.__replace__(metrics=masked, _json=None))  # type: ignore[attr-defined]
    return out
