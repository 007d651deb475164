"""The per-user key that signs checkpoint manifests, so a pickle is loaded only if this user's tunesmith wrote it.

A manifest's checksums live beside the data: whoever made the folder made them too, so they prove the files
are intact, not who wrote them. Unpickling runs code chosen by the pickle's author, so ``Checkpoint.load``
also checks an HMAC-SHA256 of the manifest made with a key that never lives in an experiment folder:

- ``TUNESMITH_KEY``: the key itself (at least 16 characters), for CI and containers;
- else ``TUNESMITH_KEY_FILE``: a file holding it;
- else ``$XDG_CONFIG_HOME/tunesmith/key`` (``~/.config/tunesmith/key``), created with 32 random bytes and mode
  0600 the first time a key is needed.

Trial processes use the driver's key: local workers inherit the environment and read the same file; Ray
actors get it in the trial's spec (:func:`use`), since a node may have another home folder or none.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tunesmith._errors import ConfigError

KEY_ENV = "TUNESMITH_KEY"
KEY_FILE_ENV = "TUNESMITH_KEY_FILE"
SIGNATURE = "signature"  # the manifest's field holding {"alg", "key_id", "hmac"}
_MIN_KEY = 16

_given: bytes | None = None  # a key handed to this process by its driver (Ray actors)
_cache: tuple[tuple[str | None, ...], bytes] | None = None


def key_file() -> str:
    """Where the key is kept when ``TUNESMITH_KEY`` is not set."""
    path = os.environ.get(KEY_FILE_ENV)
    if path:
        return os.path.abspath(os.path.expanduser(path))
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(config, "tunesmith", "key")


def key() -> bytes:
    """This user's signing key (created on first use when it lives in the default or a named file).

    Raises:
        ConfigError: ``TUNESMITH_KEY`` is too short, or the key file cannot be read or created.
    """
    global _cache
    if _given is not None:
        return _given
    where = (os.environ.get(KEY_ENV), os.environ.get(KEY_FILE_ENV), os.environ.get("XDG_CONFIG_HOME"),
             os.environ.get("HOME"))
    if _cache is not None and _cache[0] == where:
        return _cache[1]
    value = os.environ.get(KEY_ENV)
    if value:
        data = value.strip().encode()
        if len(data) < _MIN_KEY:
            raise ConfigError(f"{KEY_ENV} holds {len(data)} characters; a signing key needs at least {_MIN_KEY} "
                              f"(e.g. the output of: python -c 'import secrets; print(secrets.token_hex(32))')")
    else:
        data = _read_or_create(key_file())
    _cache = (where, data)
    return data


def use(value: bytes | None) -> None:
    """Sign and check with ``value`` in this process (the driver's key, sent to a Ray actor); None: the usual
    lookup again."""
    global _given
    _given = value


def key_id(value: bytes | None = None) -> str:
    """A short public name of a key (in manifests and messages; it does not reveal the key)."""
    import hashlib  # here: OpenSSL's load is paid when a checkpoint is signed or checked, not by every process

    return hashlib.sha256(b"tunesmith key id\0" + (key() if value is None else value)).hexdigest()[:16]


def sign(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with a signature of everything else in it by this user's key."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    k = key()
    return {**body, SIGNATURE: {"alg": "hmac-sha256", "key_id": key_id(k), "hmac": _mac(k, body)}}


def check(manifest: dict[str, Any]) -> str | None:
    """None when this user's key signed ``manifest``; else why not (unsigned, another key, altered)."""
    sig = manifest.get(SIGNATURE)
    if not isinstance(sig, dict) or not isinstance(sig.get("hmac"), str):
        return "its manifest is not signed (written by another user's tunesmith, or before checkpoints were signed)"
    k = key()
    body = {name: v for name, v in manifest.items() if name != SIGNATURE}
    import hmac

    if hmac.compare_digest(sig["hmac"], _mac(k, body)):
        return None
    if sig.get("key_id") != key_id(k):
        return f"its manifest is signed by another key ({str(sig.get('key_id'))[:16]!r}, yours is {key_id(k)!r})"
    return "its manifest was changed after it was signed"


def _mac(k: bytes, body: dict[str, Any]) -> str:
    import hashlib
    import hmac

    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hmac.new(k, text.encode(), hashlib.sha256).hexdigest()


def _read_or_create(path: str) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        # the whole key under a fresh name, then linked to the final one: a process that finds the file finds
        # it complete, and of two processes creating it at once one wins and both use its key
        tmp = os.path.join(folder, f".key.{os.urandom(8).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            try:
                os.write(fd, (os.urandom(32).hex() + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
        return _read(path)
    except OSError as e:
        raise ConfigError(f"cannot create the checkpoint signing key {path} ({e}); set {KEY_FILE_ENV} to a "
                          f"writable file or {KEY_ENV} to a key") from e


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read().strip()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ConfigError(f"cannot read the checkpoint signing key {path}: {e}") from e
    if len(data) < _MIN_KEY:
        raise ConfigError(f"the checkpoint signing key {path} holds {len(data)} bytes; expected at least "
                          f"{_MIN_KEY} (remove it to have a new one made)")
    return data
