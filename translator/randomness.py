"""Injectable clock and randomness: the OS CSPRNG in production, a seeded deterministic source for tests only.

Every secret, key and ULID syn2mas creates comes from an :class:`Entropy` (mapping.md 5.9), so that tests can
fix both the clock and the random stream and get byte-identical output.

The seeded source is for tests.  ``Entropy.seeded`` prints a warning to stderr each time it is called, unless
the process runs under pytest (pytest sets ``PYTEST_CURRENT_TEST`` while a test runs, and child processes
started by a test inherit it).  There is deliberately no other switch to silence the warning: a deterministic
"secret" outside a test is a real problem the operator must see.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import secrets
import sys
from typing import Callable

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from ulid import ULID

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
TEST_ENV_VAR = "PYTEST_CURRENT_TEST"
SEEDED_WARNING = ("warning: syn2mas is using a seeded, deterministic random source; the secrets and keys it "
                  "writes are predictable and must not be used outside tests")
RSA_PUBLIC_EXPONENT = 65537

# Group orders of the curves MAS generates keys for (SEC 2 / FIPS 186-4). A private scalar must be in [1, n-1].
CURVE_ORDERS: dict[str, int] = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
                     "581A0DB248B0A77AECEC196ACCC52973", 16),
    "secp256k1": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}

Clock = Callable[[], _dt.datetime]
ByteSource = Callable[[int], bytes]
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def system_clock() -> _dt.datetime:
    """The current time in UTC."""
    return _dt.datetime.now(_dt.timezone.utc)


def _utc_ms(moment: _dt.datetime) -> _dt.datetime:
    """``moment`` in UTC, truncated to milliseconds (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    moment = moment.astimezone(_dt.timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class _HashStream:
    """A deterministic byte stream: SHA-256 in counter mode over the seed.

    Chosen over ``random.Random`` because its output is defined by SHA-256 alone and so cannot change
    between Python versions, which keeps seeded goldens stable.
    """

    def __init__(self, seed: int | str | bytes):
        self._key = hashlib.sha256(b"syn2mas-seeded-entropy\0" + _seed_bytes(seed)).digest()
        self._counter = 0
        self._buffer = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = hashlib.sha256(self._key + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            self._buffer += block
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def _seed_bytes(seed: int | str | bytes) -> bytes:
    if isinstance(seed, bytes):
        return b"b" + seed
    if isinstance(seed, str):
        return b"s" + seed.encode()
    return b"i" + str(int(seed)).encode()


class Entropy:
    """Clock plus random source. Use :meth:`system` in production and :meth:`seeded` in tests."""

    def __init__(self, source: ByteSource, clock: Clock, *, deterministic: bool):
        self._source = source
        self._clock = clock
        self.deterministic = deterministic

    @classmethod
    def system(cls, clock: Clock | None = None) -> "Entropy":
        """The production source: ``secrets`` (the OS CSPRNG) and the system clock."""
        return cls(secrets.token_bytes, clock or system_clock, deterministic=False)

    @classmethod
    def seeded(cls, seed: int | str | bytes, clock: _dt.datetime | Clock) -> "Entropy":
        """A deterministic source for tests: same seed and clock give the same values and keys.

        ``clock`` is a fixed datetime or a callable. Warns on stderr at every call outside pytest.
        """
        if not os.environ.get(TEST_ENV_VAR):
            print(SEEDED_WARNING, file=sys.stderr)
        if isinstance(clock, _dt.datetime):
            fixed = clock
            return cls(_HashStream(seed), lambda: fixed, deterministic=True)
        return cls(_HashStream(seed), clock, deterministic=True)

    def now(self) -> _dt.datetime:
        """The clock's time in UTC with millisecond precision (what MAS stores and ULIDs carry)."""
        return _utc_ms(self._clock())

    def token_bytes(self, n: int) -> bytes:
        """``n`` random bytes."""
        if n < 0:
            raise ValueError("n must not be negative")
        return self._source(n)

    def hex(self, nbytes: int) -> str:
        """``nbytes`` random bytes as ``2 * nbytes`` lower-case hexadecimal characters (like ``secrets.token_hex``)."""
        return self.token_bytes(nbytes).hex()

    def alnum(self, n: int) -> str:
        """``n`` characters drawn uniformly from ``[A-Za-z0-9]``."""
        out: list[str] = []
        # Rejection sampling: 248 = 4 * 62 is the largest multiple of 62 below 256, so there is no modulo bias.
        while len(out) < n:
            for b in self.token_bytes(n - len(out) + 8):
                if b < 248 and len(out) < n:
                    out.append(ALNUM[b % 62])
        return "".join(out)

    def randbelow(self, n: int) -> int:
        """A uniform integer in ``[0, n)``."""
        if n <= 0:
            raise ValueError("n must be positive")
        nbytes = (n.bit_length() + 7) // 8 + 8
        # With 64 extra bits the modulo bias is below 2**-64.
        return int.from_bytes(self.token_bytes(nbytes), "big") % n

    def ulid(self, at: _dt.datetime | None = None) -> str:
        """A 26-character Crockford base32 ULID: 48-bit milliseconds of ``at`` (default: the clock), 80 random bits."""
        moment = _utc_ms(at) if at is not None else self.now()
        ms = (moment - _EPOCH) // _dt.timedelta(milliseconds=1)
        if not 0 <= ms < 1 << 48:
            raise ValueError("time out of the ULID range")
        return str(ULID.from_bytes(ms.to_bytes(6, "big") + self.token_bytes(10)))

    def rsa_key(self, bits: int = 2048) -> rsa.RSAPrivateKey:
        """An RSA private key with public exponent 65537."""
        if not self.deterministic:
            return rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=bits)
        return seeded_rsa_key(self, bits)

    def ec_key(self, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        """An EC private key on ``curve`` (P-256, P-384 or secp256k1 in seeded mode)."""
        if not self.deterministic:
            return ec.generate_private_key(curve)
        order = CURVE_ORDERS.get(curve.name)
        if order is None:
            raise ValueError(f"no seeded key generation for curve {curve.name}")
        nbytes = (order.bit_length() + 7) // 8
        while True:
            # Rejection sampling keeps the scalar uniform in [1, n-1].
            scalar = int.from_bytes(self.token_bytes(nbytes), "big")
            if 1 <= scalar < order:
                return ec.derive_private_key(scalar, curve)


def is_probable_prime(n: int, entropy: Entropy, rounds: int = 40) -> bool:
    """Miller-Rabin with ``rounds`` random bases from ``entropy`` (after trial division by small primes)."""
    if n < 2:
        return False
    if n in (2, 3):
        return True
    if n % 2 == 0:
        return False
    for p in _SMALL_PRIMES:
        if n == p:
            return True
        if n % p == 0:
            return False
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        a = 2 + entropy.randbelow(n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _seeded_prime(bits: int, entropy: Entropy) -> int:
    """A random ``bits``-bit prime p with gcd(e, p-1) = 1; the top two bits set so that p*q has 2*bits bits."""
    while True:
        candidate = int.from_bytes(entropy.token_bytes((bits + 7) // 8), "big") >> (-bits % 8)
        candidate |= (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        # For random 1024-bit candidates a few Miller-Rabin rounds already push the error far below 2**-80
        # (FIPS 186-4, appendix C.3); the seeded source serves tests, where speed matters.
        if (candidate - 1) % RSA_PUBLIC_EXPONENT and is_probable_prime(candidate, entropy, rounds=5):
            return candidate


def seeded_rsa_key(entropy: Entropy, bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key built from primes drawn from ``entropy`` (the ``cryptography`` generators cannot be seeded)."""
    if bits < 512 or bits % 2:
        raise ValueError("RSA key size must be an even number of bits, at least 512")
    while True:
        p = _seeded_prime(bits // 2, entropy)
        q = _seeded_prime(bits // 2, entropy)
        if p != q and (p * q).bit_length() == bits:
            break
    if p < q:
        p, q = q, p
    lam = math.lcm(p - 1, q - 1)
    d = pow(RSA_PUBLIC_EXPONENT, -1, lam)
    numbers = rsa.RSAPrivateNumbers(
        p=p, q=q, d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p), dmq1=rsa.rsa_crt_dmq1(d, q), iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(RSA_PUBLIC_EXPONENT, p * q),
    )
    return numbers.private_key()
