"""Password hashes for the master's login: scrypt, written ``scrypt$N$r$p$SALT$HASH``.

``SALT`` and ``HASH`` are unpadded URL-safe base64. :func:`hash_password` makes one (the
``python -m master_app.ui.auth hash`` command prints it), :func:`parse_hash` reads one and
says exactly what is wrong with a bad one, and :meth:`ScryptHash.matches` checks a
candidate in constant time. A password given in clear (``NADG_UI_PASSWORD``) is held as a
:class:`PlainSecret`, compared through an HMAC so neither its content nor its length leaks
through timing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

#: The shortest password the master accepts (a login on the internet is guessed offline
#: from a leaked hash, where throttling does not help).
MIN_PASSWORD_CHARS = 12
#: Candidates longer than this are refused unhashed (no megabyte "passwords" to hash).
MAX_PASSWORD_CHARS = 1024

#: Cost of new hashes: N=2**15, r=8, p=1 needs 32 MiB and ~0.1 s per check.
DEFAULT_N = 2**15
DEFAULT_R = 8
DEFAULT_P = 1
#: Hashes weaker than this are refused when read (they would be cheap to crack offline).
MIN_N = 2**14
MAX_N = 2**20
SALT_BYTES = 16
HASH_BYTES = 32
PREFIX = "scrypt"
FORMAT = "scrypt$N$r$p$SALT$HASH"
HOW_TO_MAKE = "make one with `python -m master_app.ui.auth hash`"


class PasswordHashError(ValueError):
    """A stored hash that cannot be used; the message says what is wrong with it."""


class Verifier(Protocol):
    """Something a typed password is checked against."""

    def matches(self, candidate: str) -> bool:
        """True when ``candidate`` is the password (constant time in its content)."""
        ...


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    maxmem = 128 * r * (n + p + 2) + 1024 * 1024  # what OpenSSL needs, with room to spare
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=maxmem, dklen=length)


def check_password_strength(password: str, what: str = "the password") -> None:
    """Raise :class:`ValueError` saying why ``password`` is too weak to protect a login."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(
            f"{what} is {len(password)} characters long; use at least {MIN_PASSWORD_CHARS} "
            "(for example the output of `python -c 'import secrets; "
            "print(secrets.token_urlsafe(18))'`)")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"{what} is longer than {MAX_PASSWORD_CHARS} characters")


@dataclass(frozen=True)
class ScryptHash:
    """A parsed ``scrypt$N$r$p$SALT$HASH``."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def matches(self, candidate: str) -> bool:
        """Hash ``candidate`` with this salt and cost and compare in constant time."""
        if len(candidate) > MAX_PASSWORD_CHARS:
            return False
        derived = _scrypt(candidate, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(derived, self.digest)

    def encode(self) -> str:
        """The one-line form stored in ``NADG_UI_PASSWORD_HASH``."""
        return f"{PREFIX}${self.n}${self.r}${self.p}${_b64(self.salt)}${_b64(self.digest)}"


class PlainSecret:
    """A password given in clear, checked through an HMAC with a random per-process key."""

    def __init__(self, password: str) -> None:
        self._key = secrets.token_bytes(32)
        self._digest = self._mac(password)

    def _mac(self, text: str) -> bytes:
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).digest()

    def matches(self, candidate: str) -> bool:
        """Compare fixed-length MACs, so neither content nor length shows in the timing."""
        if len(candidate) > MAX_PASSWORD_CHARS:
            return False
        return hmac.compare_digest(self._mac(candidate), self._digest)

    def __repr__(self) -> str:
        return "PlainSecret(**********)"


def hash_password(password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R,
                  p: int = DEFAULT_P) -> str:
    """A new salted scrypt hash of ``password`` (refused when it is too short)."""
    check_password_strength(password)
    salt = secrets.token_bytes(SALT_BYTES)
    return ScryptHash(n, r, p, salt, _scrypt(password, salt, n, r, p, HASH_BYTES)).encode()


def parse_hash(text: str, what: str = "the password hash") -> ScryptHash:
    """Read ``scrypt$N$r$p$SALT$HASH``; a :class:`PasswordHashError` says what is wrong."""
    parts = text.strip().split("$")
    if len(parts) != 6 or parts[0] != PREFIX:
        raise PasswordHashError(
            f"{what} is not in the form {FORMAT} ({len(parts)} '$'-separated fields, "
            f"starting {parts[0][:10]!r}); {HOW_TO_MAKE}")
    try:
        n, r, p = (int(x) for x in parts[1:4])
    except ValueError:
        raise PasswordHashError(
            f"{what}: N, r and p must be whole numbers (in {FORMAT}); {HOW_TO_MAKE}") from None
    if n < MIN_N or n > MAX_N or n & (n - 1):
        raise PasswordHashError(
            f"{what}: N={n} must be a power of two between {MIN_N} and {MAX_N}; {HOW_TO_MAKE}")
    if not 1 <= r <= 32 or not 1 <= p <= 16:
        raise PasswordHashError(f"{what}: r={r} must be 1..32 and p={p} 1..16; {HOW_TO_MAKE}")
    try:
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except (binascii.Error, ValueError):
        raise PasswordHashError(
            f"{what}: the salt and hash must be URL-safe base64; {HOW_TO_MAKE}") from None
    if len(salt) < SALT_BYTES or len(digest) < HASH_BYTES:
        raise PasswordHashError(
            f"{what}: the salt must be at least {SALT_BYTES} bytes and the hash at least "
            f"{HASH_BYTES} (got {len(salt)} and {len(digest)}); {HOW_TO_MAKE}")
    return ScryptHash(n, r, p, salt, digest)
