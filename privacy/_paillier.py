"""Additively homomorphic encryption (同态加密) behind a small interface: Paillier through ``phe``.

``phe`` (python-paillier) is GPLv3 while govdx is Apache-2.0, so the sandbox and the client only
use :class:`HomomorphicScheme` (keygen, encrypt a vector, add, decrypt, serialize); the one
implementation here, :class:`PhePaillier`, is what a deployment swaps for another backend.

Scheme: Paillier (EUROCRYPT 1999) with ``g = n + 1`` (the simplification of Damgård & Jurik,
PKC 2001, used by ``phe``): ``Enc(m; r) = (1 + m·n) · r^n mod n²``. ``phe`` generates the keys and
decrypts (``raw_decrypt``, CRT); we build ciphertexts ourselves from that definition because
``phe``'s ``raw_encrypt(m, r_value)`` always recomputes ``r^n`` — the whole cost — so an
obfuscator ``r^n mod n²`` computed ahead cannot be passed in. Obfuscators are computed with
``gmpy2.powmod`` in a process pool (both cores):

* with the public key only: ``r^n mod n²`` for uniform ``r ∈ Z_n*`` (≈ 125/s per core here);
* by the key owner (fast path): ``CRT(x_p^p mod p², x_q^q mod q²)`` for uniform ``x_p ∈ Z_p*``,
  ``x_q ∈ Z_q*``. The n-th residues mod n² are exactly ``H_p × H_q`` (the order p−1 and q−1
  subgroups of ``Z*_{p²}``, ``Z*_{q²}``) and ``x ↦ x^p mod p²`` maps ``Z_p*`` onto ``H_p``, so this
  is the same uniform distribution as ``r^n`` at ≈ 3.5× less cost (Google private-join-and-compute
  ``PrivatePaillier::Encrypt`` encrypts per prime and recombines by CRT the same way).

An :class:`ObfuscatorPool` holds obfuscators made ahead of a job; each is used once. A
:class:`KeyPack` is a fresh key pair with such a pool, saved as one 0600 file (written to a
temporary file and renamed): the unit of the sandbox's key stock for psi_sum joins
(``sandbox._he_stock``), with which a join encrypts each value with one modular multiplication.

Numbers: plaintexts are integers (fixed-point: the caller scales, e.g. fen = 元 × 100). Signed
values are encoded mod n; a decrypted value ``v`` is positive when ``v ≤ n//3``, negative when
``v ≥ n − n//3`` (``phe``'s convention) and an error in between (overflow, tampering, wrong key).
:class:`SlotLayout` packs several signed 64-bit values into one plaintext for sums
(docs/he.md: slot layout and overflow bounds).

Keys: at least 2048-bit n (:data:`MIN_KEY_BITS`; 3072 configurable), serialized as JSON
(``govdx-paillier-public-key`` / ``govdx-paillier-private-key``, integers base64 big-endian).

Errors::

    privacy.PrivacyError
    └── HeError                  root of this module (同态加密错误)
        ├── HeKeyError           a key that is too short, malformed or of another format
        │                        (also a govdx.DefinitionError: refused before any encryption)
        ├── HeValueError         a value that is not an integer, or out of range (overflow)
        │                        (also a govdx.DefinitionError)
        └── HeDecryptionError    a ciphertext that is not in Z*_{n²}, encrypted under another
                                 key, or that decrypts out of range (tampered / wrong key)
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import multiprocessing
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from govdx._errors import DefinitionError
from privacy._errors import PrivacyError

MIN_KEY_BITS = 2048
"""Smallest accepted modulus n, bits (NIST SP 800-57: 2048-bit factoring ≈ 112-bit security)."""
MAX_KEY_BITS = 4096
DEFAULT_KEY_BITS = 2048
PUBLIC_KEY_FORMAT = "govdx-paillier-public-key"
PRIVATE_KEY_FORMAT = "govdx-paillier-private-key"
KEY_FORMAT_VERSION = 1
_SMALL_PRIMES = math.prod(
    [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]
)
_MIN_CHUNK = 256


class HeError(PrivacyError):
    """Root of the homomorphic-encryption errors (同态加密错误)."""


class HeKeyError(HeError, DefinitionError):
    """A Paillier key is too short, malformed or not in the govdx format (密钥无效)."""


class HeValueError(HeError, DefinitionError):
    """A value is not an integer or is out of the encodable range (数值无效或溢出)."""


class HeDecryptionError(HeError):
    """A ciphertext is invalid, under another key, or decrypts out of range (密文无效)."""


def _b64(x: int) -> str:
    return base64.b64encode(x.to_bytes((x.bit_length() + 7) // 8 or 1, "big")).decode("ascii")


def _unb64(doc: dict[str, Any], key: str, what: str) -> int:
    v = doc.get(key)
    if not isinstance(v, str):
        raise HeKeyError(f"{what}: key {key!r} missing or not a base64 string")
    try:
        return int.from_bytes(base64.b64decode(v, validate=True), "big")
    except ValueError as exc:
        raise HeKeyError(f"{what}: key {key!r} is not base64") from exc


def _check_modulus(n: int, what: str) -> None:
    bits = n.bit_length()
    if bits < MIN_KEY_BITS:
        raise HeKeyError(
            f"{what}: modulus n has {bits} bits, below the minimum of {MIN_KEY_BITS} (密钥长度不足)"
        )
    if bits > MAX_KEY_BITS:
        raise HeKeyError(f"{what}: modulus n has {bits} bits, above {MAX_KEY_BITS}")
    if n % 2 == 0 or math.gcd(n, _SMALL_PRIMES) != 1 or math.isqrt(n) ** 2 == n:
        raise HeKeyError(f"{what}: modulus n is not a product of two large primes (密钥格式错误)")


@dataclass(frozen=True)
class PublicKey:
    """A Paillier public key (公钥): modulus ``n``, ``g = n + 1``.

    Attributes:
        n: the modulus (≥ 2048 bits).
    """

    n: int

    @property
    def bits(self) -> int:
        """Bit length of n."""
        return self.n.bit_length()

    @property
    def nsquare(self) -> int:
        return self.n * self.n

    @property
    def fingerprint(self) -> str:
        """First 16 hex chars of SM3(n big-endian) — names the key in messages."""
        raw = self.n.to_bytes((self.bits + 7) // 8, "big")
        return hashlib.new("sm3", raw).hexdigest()[:16]

    @property
    def ciphertext_bytes(self) -> int:
        """Fixed width of a serialized ciphertext (bytes of n²)."""
        return (self.nsquare.bit_length() + 7) // 8

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON form (docs/he.md)."""
        return {
            "format": PUBLIC_KEY_FORMAT,
            "version": KEY_FORMAT_VERSION,
            "scheme": "paillier",
            "g": "n+1",
            "bits": self.bits,
            "n": _b64(self.n),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, doc: Any, *, what: str = "public key") -> PublicKey:
        """Parse and validate.

        Raises:
            HeKeyError: not a mapping, wrong format/version/scheme, n not base64, n shorter
                than :data:`MIN_KEY_BITS`, even, with a small factor, or a square.
        """
        if not isinstance(doc, dict):
            raise HeKeyError(f"{what}: expected a JSON object")
        if doc.get("format") != PUBLIC_KEY_FORMAT:
            raise HeKeyError(
                f"{what}: format {doc.get('format')!r}, expected {PUBLIC_KEY_FORMAT!r}"
            )
        if doc.get("version") != KEY_FORMAT_VERSION or doc.get("g") != "n+1":
            raise HeKeyError(f"{what}: unsupported version or generator")
        n = _unb64(doc, "n", what)
        _check_modulus(n, what)
        return cls(n)

    @classmethod
    def from_json(cls, text: str | bytes, *, what: str = "public key") -> PublicKey:
        """Parse a JSON string (see :meth:`from_dict`). Raises HeKeyError."""
        try:
            doc = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise HeKeyError(f"{what}: not JSON ({exc})") from exc
        return cls.from_dict(doc, what=what)


@dataclass(frozen=True)
class PrivateKey:
    """A Paillier private key (私钥): the primes ``p``, ``q`` of ``n``. Never leaves its owner."""

    public: PublicKey
    p: int
    q: int = field(repr=False)

    def __repr__(self) -> str:
        return f"PrivateKey(fingerprint={self.public.fingerprint!r}, bits={self.public.bits})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PRIVATE_KEY_FORMAT,
            "version": KEY_FORMAT_VERSION,
            "scheme": "paillier",
            "g": "n+1",
            "bits": self.public.bits,
            "n": _b64(self.public.n),
            "p": _b64(self.p),
            "q": _b64(self.q),
        }

    @classmethod
    def from_dict(cls, doc: Any, *, what: str = "private key") -> PrivateKey:
        """Parse and validate (n = p·q, n ≥ 2048 bits). Raises HeKeyError."""
        if not isinstance(doc, dict) or doc.get("format") != PRIVATE_KEY_FORMAT:
            raise HeKeyError(f"{what}: not a {PRIVATE_KEY_FORMAT}")
        n, p, q = (_unb64(doc, k, what) for k in ("n", "p", "q"))
        _check_modulus(n, what)
        if p * q != n or p == q:
            raise HeKeyError(f"{what}: p·q ≠ n (密钥格式错误)")
        return cls(PublicKey(n), p, q)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write as JSON with mode 0600. Raises HeError when the file cannot be written."""
        p = Path(path)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                os.fchmod(fh.fileno(), 0o600)
                json.dump(self.to_dict(), fh, sort_keys=True)
        except OSError as exc:
            raise HeError(f"{p}: cannot write the private key: {exc.strerror}") from exc
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PrivateKey:
        """Read a key written by :meth:`save`. Raises HeKeyError (unreadable, malformed)."""
        p = Path(path)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise HeKeyError(f"{p}: cannot read the private key: {exc}") from exc
        return cls.from_dict(doc, what=str(p))


# --- integers ---------------------------------------------------------------------------------
def _as_ints(values: Iterable[Any], what: str) -> list[int]:
    out: list[int] = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            try:
                import numpy as np

                if isinstance(v, np.integer):
                    out.append(int(v))
                    continue
            except ImportError:  # pragma: no cover
                pass
            raise HeValueError(
                f"{what}: value {i} is {type(v).__name__}, expected an integer in documented "
                "units (fen, not yuan floats; 数值必须为整数)"
            )
        out.append(v)
    return out


def encode_signed(v: int, n: int) -> int:
    """``v mod n`` for ``|v| ≤ n//3`` (phe's signed encoding). Raises HeValueError."""
    if abs(v) > n // 3:
        raise HeValueError(f"value of {v.bit_length()} bits overflows the plaintext space (溢出)")
    return v % n


def decode_signed(m: int, n: int) -> int:
    """Inverse of :func:`encode_signed`. Raises HeDecryptionError in the gap (n//3, n − n//3)."""
    third = n // 3
    if m <= third:
        return m
    if m >= n - third:
        return m - n
    raise HeDecryptionError(
        "decrypted value is outside the signed range: overflow, tampered ciphertext or wrong "
        "key (解密结果越界)"
    )


@dataclass(frozen=True)
class SlotLayout:
    """Packing of signed integers into one plaintext for sums (打包).

    Each slot is ``slot_bits`` wide and holds ``v + 2^(value_bits−1)`` (an offset makes
    negatives non-negative); ``headroom = slot_bits − value_bits`` bits absorb carries, so up
    to ``2^headroom`` packed vectors may be added before a slot could overflow into the next.
    A sum of ``T`` vectors decodes as ``slot − T·2^(value_bits−1)``.

    Attributes:
        value_bits: signed width of one value (64: ``|v| < 2^63``).
        slot_bits: width of a slot (80: 16 bits of headroom, up to 65,536 additions).
    """

    value_bits: int = 64
    slot_bits: int = 80

    @property
    def offset(self) -> int:
        return 1 << (self.value_bits - 1)

    @property
    def max_terms(self) -> int:
        """Largest number of packed vectors that may be added, 2^headroom."""
        return 1 << (self.slot_bits - self.value_bits)

    def slots(self, pk: PublicKey) -> int:
        """Slots per plaintext: ``(bits(n) − 2) // slot_bits`` (25 for 2048-bit n)."""
        return (pk.bits - 2) // self.slot_bits

    def pack(self, values: Sequence[int], pk: PublicKey) -> list[int]:
        """Plaintexts (list[ceil(len/slots)] of int) holding ``values`` in slot order.

        Raises:
            HeValueError: a value outside ``[−2^(value_bits−1), 2^(value_bits−1))``.
        """
        vals = _as_ints(values, "pack")
        k, off, w = self.slots(pk), self.offset, self.slot_bits
        out = []
        for start in range(0, len(vals), k):
            m = 0
            for i, v in enumerate(vals[start : start + k]):
                if not -off <= v < off:
                    raise HeValueError(
                        f"value {start + i} needs more than {self.value_bits} signed bits "
                        f"(overflow, 溢出); slot layout {self.value_bits}/{self.slot_bits}"
                    )
                m |= (v + off) << (w * i)
            out.append(m)
        return out

    def unpack(self, plaintexts: Sequence[int], count: int, terms: int, pk: PublicKey) -> list[int]:
        """Values of a sum of ``terms`` packed vectors of length ``count``.

        Raises:
            HeDecryptionError: bits above the used slots, or a slot outside
                ``[0, terms·2^value_bits)`` — tampered ciphertext, wrong key or overflow.
        """
        if not 1 <= terms <= self.max_terms:
            raise HeDecryptionError(f"terms {terms} outside 1..{self.max_terms}")
        k, w = self.slots(pk), self.slot_bits
        mask = (1 << w) - 1
        bound = terms << self.value_bits
        out: list[int] = []
        for j, m in enumerate(plaintexts):
            used = min(k, count - j * k)
            if used <= 0 or m >> (w * used):
                raise HeDecryptionError(
                    f"plaintext {j} has bits beyond its {max(used, 0)} slots: tampered ciphertext "
                    "or wrong key (密文被篡改或密钥错误)"
                )
            for i in range(used):
                s = (m >> (w * i)) & mask
                if s >= bound:
                    raise HeDecryptionError(
                        f"slot {j * k + i} out of range (overflow or tampering)"
                    )
                out.append(s - terms * self.offset)
        if len(out) != count:
            raise HeDecryptionError(f"{len(out)} values decoded, {count} expected")
        return out


# --- obfuscators ------------------------------------------------------------------------------
def _w_obf_public(n: int, count: int) -> list[int]:
    import gmpy2

    gn, gn2 = gmpy2.mpz(n), gmpy2.mpz(n * n)
    out = []
    for _ in range(count):
        r = secrets.randbelow(n - 1) + 1
        out.append(int(gmpy2.powmod(r, gn, gn2)))
    return out


def _w_obf_crt(p: int, q: int, count: int) -> list[int]:
    import gmpy2

    gp, gq = gmpy2.mpz(p), gmpy2.mpz(q)
    p2, q2 = gp * gp, gq * gq
    inv = gmpy2.invert(p2, q2)
    out = []
    for _ in range(count):
        op = gmpy2.powmod(secrets.randbelow(p - 1) + 1, gp, p2)
        oq = gmpy2.powmod(secrets.randbelow(q - 1) + 1, gq, q2)
        out.append(int(op + p2 * (((oq - op) * inv) % q2)))
    return out


def _pool_run(
    fn: Any,
    args: tuple[Any, ...],
    count: int,
    processes: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[int]:
    if count <= 0:
        return []
    if processes <= 1 or count < 2 * _MIN_CHUNK:
        out = fn(*args, count)
        if progress is not None:
            progress(count, count)
        return out
    size = max(_MIN_CHUNK, math.ceil(count / processes))
    if progress is not None:  # smaller chunks so that progress can be reported as they finish
        size = max(_MIN_CHUNK, math.ceil(count / (processes * 16)))
    sizes = [min(size, count - i) for i in range(0, count, size)]
    ctx = multiprocessing.get_context("forkserver")
    try:
        with ProcessPoolExecutor(max_workers=min(processes, len(sizes)), mp_context=ctx) as ex:
            out = []
            for part in ex.map(fn, *([a] * len(sizes) for a in args), sizes):
                out.extend(part)
                if progress is not None:
                    progress(len(out), count)
            return out
    except BrokenProcessPool as exc:
        raise HeError(f"obfuscator worker process died: {exc}") from exc


def make_obfuscators(
    key: PublicKey | PrivateKey,
    count: int,
    *,
    processes: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> list[int]:
    """``count`` fresh obfuscators ``r^n mod n²`` (uniform n-th residues), each usable once.

    Args:
        key: a public key (``r^n``, ≈ 125/s per core at 2048 bits) or the owner's private key
            (CRT fast path, ≈ 440/s per core).
        count: how many.
        processes: worker processes (both cores: 2).
        progress: optional callback ``(done, count)`` called as chunks finish.

    Returns:
        list[count] of int in ``Z*_{n²}``.

    Raises:
        HeError: a worker process died.
    """
    if isinstance(key, PrivateKey):
        return _pool_run(_w_obf_crt, (key.p, key.q), count, processes, progress)
    return _pool_run(_w_obf_public, (key.n,), count, processes, progress)


class ObfuscatorPool:
    """Obfuscators made ahead of a job for one key (预计算随机数); each is handed out once.

    Args:
        key: the public key they belong to.
        values: the obfuscators (list of int).
    """

    def __init__(self, key: PublicKey, values: list[int]) -> None:
        self.key = key
        self._values = list(values)

    def __len__(self) -> int:
        return len(self._values)

    @classmethod
    def precompute(
        cls, key: PublicKey | PrivateKey, count: int, *, processes: int = 2
    ) -> ObfuscatorPool:
        """Compute ``count`` obfuscators now (see :func:`make_obfuscators`)."""
        pk = key.public if isinstance(key, PrivateKey) else key
        return cls(pk, make_obfuscators(key, count, processes=processes))

    def take(self, count: int) -> list[int]:
        """Remove and return ``count`` obfuscators.

        Raises:
            HeError: fewer than ``count`` left (never reuses one: reuse would leak differences).
        """
        if count > len(self._values):
            raise HeError(f"obfuscator pool holds {len(self._values)}, {count} needed")
        out, self._values = self._values[:count], self._values[count:]
        return out

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (mode 0600): JSON header line + fixed-width big-endian obfuscators.

        Raises:
            HeError: the file cannot be written.
        """
        width = self.key.ciphertext_bytes
        head = {"key": self.key.to_dict(), "count": len(self), "width": width}
        return _write_private(Path(path), head, self._body(width))

    def _body(self, width: int) -> bytes:
        return b"".join(v.to_bytes(width, "big") for v in self._values)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ObfuscatorPool:
        """Read a pool written by :meth:`save`. Raises HeError on a malformed file."""
        p = Path(path)
        doc, body = _read_private(p, "obfuscator pool")
        try:
            key = PublicKey.from_dict(doc["key"])
        except (KeyError, TypeError) as exc:
            raise HeError(f"{p}: not an obfuscator pool ({exc})") from exc
        return cls(key, _split_values(p, doc, body, key))


def _write_private(path: Path, head: dict[str, Any], body: bytes) -> Path:
    """``head`` as one JSON line, then ``body``; written to a temporary file in the same folder
    (mode 0600, fsynced) and renamed over ``path``, so readers see the whole file or none."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(json.dumps(head, sort_keys=True).encode("utf-8") + b"\n")
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise HeError(f"{path}: cannot write: {exc.strerror}") from exc
    return path


def _read_private(path: Path, what: str) -> tuple[dict[str, Any], bytes]:
    try:
        raw = path.read_bytes()
        head, _, body = raw.partition(b"\n")
        doc = json.loads(head)
    except (OSError, ValueError) as exc:
        raise HeError(f"{path}: not an {what} ({exc})") from exc
    if not isinstance(doc, dict):
        raise HeError(f"{path}: not an {what} (header is not a JSON object)")
    return doc, body


def _split_values(path: Path, doc: dict[str, Any], body: bytes, key: PublicKey) -> list[int]:
    try:
        width, count = int(doc["width"]), int(doc["count"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HeError(f"{path}: header lacks 'width'/'count' ({exc})") from exc
    if width != key.ciphertext_bytes or len(body) != width * count:
        raise HeError(f"{path}: truncated or malformed obfuscators (width {width}, count {count})")
    n2 = key.nsquare
    vals = [int.from_bytes(body[i : i + width], "big") for i in range(0, len(body), width)]
    if any(not 0 < v < n2 for v in vals):
        raise HeError(f"{path}: an obfuscator is outside [1, n²)")
    return vals


KEY_PACK_FORMAT = "govdx-paillier-key-pack"


@dataclass
class KeyPack:
    """A single-use key pack (一次性密钥包): a fresh Paillier key pair with owner (CRT)
    obfuscators made ahead for it — what a department needs to encrypt one psi_sum join's
    values with one modular multiplication each (docs/he.md "Key stock").

    File (mode 0600, written atomically): one JSON header line ``{"format":
    "govdx-paillier-key-pack", "version": 1, "key": <private key JSON>, "count", "width",
    "meta": {...}}``, then ``count`` obfuscators of ``width`` bytes (n², big-endian).

    Attributes:
        private_key: the pack's key (its public key is ``private_key.public``).
        pool: the obfuscators, an :class:`ObfuscatorPool` of that key.
        meta: free JSON facts (dataset, pack id, created) kept in the header.
    """

    private_key: PrivateKey
    pool: ObfuscatorPool
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(
        cls,
        bits: int,
        count: int,
        *,
        processes: int = 2,
        progress: Callable[[int, int], None] | None = None,
        meta: dict[str, Any] | None = None,
        scheme: PhePaillier | None = None,
    ) -> KeyPack:
        """Generate a key of ``bits`` and ``count`` CRT obfuscators for it.

        Args:
            bits: modulus bits (2048..4096).
            count: obfuscators (one per value the join will encrypt), ≥ 0.
            processes: worker processes (2: both cores; ≈ 440/s per core at 2048 bits).
            progress: optional ``(done, count)`` callback.
            meta: facts to keep in the header.
            scheme: the Paillier implementation (default :class:`PhePaillier`).

        Raises:
            HeKeyError: ``bits`` out of range. HeError: ``count`` < 0, a worker died.
        """
        if count < 0:
            raise HeError(f"key pack size {count} < 0")
        _pk, sk = (scheme or PhePaillier()).keygen(bits)
        values = make_obfuscators(sk, count, processes=processes, progress=progress)
        return cls(sk, ObfuscatorPool(sk.public, values), dict(meta or {}))

    @property
    def public(self) -> PublicKey:
        """The pack's public key."""
        return self.private_key.public

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically, mode 0600 (holds the private key). Raises HeError."""
        width = self.public.ciphertext_bytes
        head = {
            "format": KEY_PACK_FORMAT,
            "version": KEY_FORMAT_VERSION,
            "key": self.private_key.to_dict(),
            "count": len(self.pool),
            "width": width,
            "meta": self.meta,
        }
        return _write_private(Path(path), head, self.pool._body(width))

    @staticmethod
    def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
        """The header without the key: ``{"bits", "count", "fingerprint", "meta"}`` (reads
        only the first line). Raises HeError."""
        p = Path(path)
        try:
            with p.open("rb") as fh:
                doc = json.loads(fh.readline(1 << 16))
            key = PrivateKey.from_dict(doc["key"], what=str(p))
            return {
                "bits": key.public.bits,
                "count": int(doc["count"]),
                "fingerprint": key.public.fingerprint,
                "meta": dict(doc.get("meta") or {}),
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HeError(f"{p}: not a key pack ({exc})") from exc

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, spot_check: int = 2) -> KeyPack:
        """Read a pack written by :meth:`save` and check ``spot_check`` random obfuscators are
        n-th residues of its key (``o^λ ≡ 1 mod n²``: the pack is whole and of this key).

        Raises:
            HeKeyError: a malformed key. HeError: another format, truncated, a failed check.
        """
        p = Path(path)
        doc, body = _read_private(p, "key pack")
        if doc.get("format") != KEY_PACK_FORMAT or doc.get("version") != KEY_FORMAT_VERSION:
            raise HeError(f"{p}: not a {KEY_PACK_FORMAT} (format {doc.get('format')!r})")
        sk = PrivateKey.from_dict(doc.get("key"), what=str(p))
        vals = _split_values(p, doc, body, sk.public)
        lam = math.lcm(sk.p - 1, sk.q - 1)
        n2 = sk.public.nsquare
        import gmpy2

        for _ in range(min(spot_check, len(vals))):
            if gmpy2.powmod(vals[secrets.randbelow(len(vals))], lam, n2) != 1:
                raise HeError(f"{p}: an obfuscator is not an n-th residue of the pack's key")
        return cls(sk, ObfuscatorPool(sk.public, vals), dict(doc.get("meta") or {}))


# --- the interface ----------------------------------------------------------------------------
@runtime_checkable
class HomomorphicScheme(Protocol):
    """What the sandbox and the client need of an additively homomorphic scheme.

    Ciphertexts are plain ``int`` (serialized fixed-width big-endian, ``ciphertext_bytes``).
    """

    name: str

    def keygen(self, bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
        """A fresh key pair of ``bits``-bit modulus (≥ 2048)."""
        ...

    def encrypt_vector(
        self,
        pk: PublicKey,
        plaintexts: Sequence[int],
        *,
        private_key: PrivateKey | None = None,
        pool: ObfuscatorPool | None = None,
        processes: int = 2,
    ) -> list[int]:
        """Encrypt non-negative plaintexts ``< n``."""
        ...

    def add(self, pk: PublicKey, a: Sequence[int], b: Sequence[int]) -> list[int]:
        """Elementwise homomorphic addition."""
        ...

    def decrypt_vector(self, sk: PrivateKey, ciphertexts: Sequence[int]) -> list[int]:
        """Plaintexts in ``[0, n)``."""
        ...

    def serialize_public(self, pk: PublicKey) -> str:
        """JSON of the public key."""
        ...

    def load_public(self, text: str | bytes) -> PublicKey:
        """Parse and validate a public key."""
        ...


class PhePaillier:
    """Paillier through ``phe`` (keygen, decryption) and ``gmpy2`` (encryption, addition).

    Source: P. Paillier, *Public-Key Cryptosystems Based on Composite Degree Residuosity
    Classes*, EUROCRYPT 1999; I. Damgård & M. Jurik, PKC 2001 (g = n+1);
    python-paillier https://python-paillier.readthedocs.io (``phe.paillier``).
    """

    name = "paillier-phe"

    def keygen(self, bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
        """A fresh key pair (``phe.generate_paillier_keypair``).

        Args:
            bits: modulus length, 2048 (default) to 4096; 3072 for longer-lived keys.

        Raises:
            HeKeyError: ``bits`` below 2048 or above 4096.
        """
        if not isinstance(bits, int) or not MIN_KEY_BITS <= bits <= MAX_KEY_BITS:
            raise HeKeyError(
                f"key size {bits!r} bits: use {MIN_KEY_BITS}..{MAX_KEY_BITS} (密钥长度不足)"
            )
        from phe import paillier

        for _ in range(8):
            pub, priv = paillier.generate_paillier_keypair(n_length=bits)
            if pub.n.bit_length() == bits:
                pk = PublicKey(int(pub.n))
                return pk, PrivateKey(pk, int(priv.p), int(priv.q))
        raise HeKeyError(f"could not generate a {bits}-bit modulus")  # pragma: no cover

    def encrypt_vector(
        self,
        pk: PublicKey,
        plaintexts: Sequence[int],
        *,
        private_key: PrivateKey | None = None,
        pool: ObfuscatorPool | None = None,
        processes: int = 2,
    ) -> list[int]:
        """``(1 + m·n) · obf mod n²`` per plaintext.

        Args:
            pk: the recipient's public key.
            plaintexts: sequence[k] of int in ``[0, n)`` (use :func:`encode_signed` or
                :meth:`SlotLayout.pack`).
            private_key: the key owner's private key: CRT fast path for the obfuscators.
            pool: obfuscators made ahead (:class:`ObfuscatorPool` of this key); used first.
            processes: worker processes for obfuscators not in the pool.

        Returns:
            list[k] of ciphertexts (int in ``Z*_{n²}``).

        Raises:
            HeValueError: a plaintext that is not an int in ``[0, n)``.
            HeKeyError: ``private_key`` or ``pool`` of another key.
        """
        ms = _as_ints(plaintexts, "encrypt_vector")
        n = pk.n
        bad = next((i for i, m in enumerate(ms) if not 0 <= m < n), None)
        if bad is not None:
            raise HeValueError(f"plaintext {bad} is outside [0, n) (溢出)")
        if private_key is not None and private_key.public != pk:
            raise HeKeyError("private key does not belong to this public key (密钥不匹配)")
        obf: list[int] = []
        if pool is not None:
            if pool.key != pk:
                raise HeKeyError("obfuscator pool belongs to another key (密钥不匹配)")
            obf = pool.take(min(len(pool), len(ms)))
        missing = len(ms) - len(obf)
        if missing:
            obf += make_obfuscators(private_key or pk, missing, processes=processes)
        import gmpy2

        n2 = gmpy2.mpz(pk.nsquare)
        gn = gmpy2.mpz(n)
        return [int(((1 + m * gn) * o) % n2) for m, o in zip(ms, obf, strict=True)]

    def add(self, pk: PublicKey, a: Sequence[int], b: Sequence[int]) -> list[int]:
        """``a_i · b_i mod n²`` (encrypts the sum of the plaintexts mod n).

        Raises:
            HeError: vectors of different lengths.
        """
        if len(a) != len(b):
            raise HeError(f"cannot add ciphertext vectors of lengths {len(a)} and {len(b)}")
        import gmpy2

        n2 = gmpy2.mpz(pk.nsquare)
        return [int((gmpy2.mpz(x) * y) % n2) for x, y in zip(a, b, strict=True)]

    def sum(self, pk: PublicKey, ciphertexts: Iterable[int]) -> int:
        """Product of ciphertexts mod n² = encryption of the sum (Enc(0) with r=1 when empty)."""
        import gmpy2

        n2 = gmpy2.mpz(pk.nsquare)
        acc = gmpy2.mpz(1)
        for c in ciphertexts:
            acc = (acc * c) % n2
        return int(acc)

    def rerandomize(self, pk: PublicKey, c: int) -> int:
        """Multiply by a fresh ``r^n``: same plaintext, unlinkable ciphertext."""
        return int((c * make_obfuscators(pk, 1, processes=1)[0]) % pk.nsquare)

    def check_ciphertext(self, pk: PublicKey, c: int) -> None:
        """Raises HeDecryptionError unless ``c ∈ Z*_{n²}``."""
        if isinstance(c, bool) or not isinstance(c, int) or not 0 < c < pk.nsquare:
            raise HeDecryptionError("ciphertext outside [1, n²) (密文无效)")
        if math.gcd(c, pk.n) != 1:
            raise HeDecryptionError("ciphertext not invertible mod n (密文无效)")

    def decrypt_vector(self, sk: PrivateKey, ciphertexts: Sequence[int]) -> list[int]:
        """Plaintexts in ``[0, n)`` (``phe`` ``PaillierPrivateKey.raw_decrypt``, CRT).

        Raises:
            HeDecryptionError: a ciphertext outside ``Z*_{n²}``.
        """
        from phe import paillier

        priv = paillier.PaillierPrivateKey(paillier.PaillierPublicKey(sk.public.n), sk.p, sk.q)
        out = []
        for c in ciphertexts:
            self.check_ciphertext(sk.public, c)
            out.append(int(priv.raw_decrypt(int(c))))
        return out

    def serialize_public(self, pk: PublicKey) -> str:
        return pk.to_json()

    def load_public(self, text: str | bytes) -> PublicKey:
        return PublicKey.from_json(text)


def default_scheme() -> HomomorphicScheme:
    """The configured homomorphic backend (``PhePaillier``)."""
    return PhePaillier()


# --- encrypted vectors on the wire --------------------------------------------------------------
ENCRYPTED_VECTOR_FORMAT = "govdx-he-vector"


@dataclass(frozen=True)
class EncryptedVector:
    """Packed encrypted integers (打包密文向量) as released to a requester.

    Attributes:
        key: the public key they are encrypted under.
        count: number of values packed.
        terms: number of packed vectors summed into these ciphertexts (the offset multiplier).
        layout: the :class:`SlotLayout`.
        ciphertexts: list[ceil(count / slots)] of int.
    """

    key: PublicKey
    count: int
    terms: int
    layout: SlotLayout
    ciphertexts: tuple[int, ...]

    @classmethod
    def encrypt(
        cls,
        values: Sequence[int],
        pk: PublicKey,
        *,
        scheme: HomomorphicScheme | None = None,
        layout: SlotLayout | None = None,
        processes: int = 2,
    ) -> EncryptedVector:
        """Pack and encrypt signed integers. Raises HeValueError (not int, overflow)."""
        layout = layout or SlotLayout()
        scheme = scheme or default_scheme()
        vals = _as_ints(values, "values")
        cts = scheme.encrypt_vector(pk, layout.pack(vals, pk), processes=processes)
        return cls(pk, len(vals), 1, layout, tuple(cts))

    def __add__(self, other: EncryptedVector) -> EncryptedVector:
        """Homomorphic sum (the aggregator's operation: it never sees a plaintext).

        Raises:
            HeError: other key, length or layout; more than ``layout.max_terms`` terms.
        """
        if other.key != self.key or other.count != self.count or other.layout != self.layout:
            raise HeError("cannot add encrypted vectors of different keys, lengths or layouts")
        terms = self.terms + other.terms
        if terms > self.layout.max_terms:
            raise HeError(f"{terms} terms exceed the slot headroom ({self.layout.max_terms})")
        cts = PhePaillier().add(self.key, self.ciphertexts, other.ciphertexts)
        return EncryptedVector(self.key, self.count, terms, self.layout, tuple(cts))

    def decrypt(self, sk: PrivateKey, *, scheme: HomomorphicScheme | None = None) -> list[int]:
        """The summed values (list[count] of int).

        Raises:
            HeDecryptionError: another key (fingerprints named), or a plaintext out of range.
        """
        if sk.public != self.key:
            raise HeDecryptionError(
                f"values are encrypted under key {self.key.fingerprint}, this private key is "
                f"{sk.public.fingerprint} (密钥不匹配)"
            )
        scheme = scheme or default_scheme()
        plain = scheme.decrypt_vector(sk, self.ciphertexts)
        return self.layout.unpack(plain, self.count, self.terms, self.key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ENCRYPTED_VECTOR_FORMAT,
            "version": 1,
            "key": self.key.to_dict(),
            "key_fingerprint": self.key.fingerprint,
            "count": self.count,
            "terms": self.terms,
            "value_bits": self.layout.value_bits,
            "slot_bits": self.layout.slot_bits,
            "ciphertexts": [_b64(c) for c in self.ciphertexts],
        }

    @classmethod
    def from_dict(cls, doc: Any) -> EncryptedVector:
        """Parse and validate. Raises HeError / HeKeyError / HeDecryptionError."""
        if not isinstance(doc, dict) or doc.get("format") != ENCRYPTED_VECTOR_FORMAT:
            raise HeError(f"not a {ENCRYPTED_VECTOR_FORMAT} document")
        key = PublicKey.from_dict(doc.get("key"))
        try:
            layout = SlotLayout(int(doc["value_bits"]), int(doc["slot_bits"]))
            count, terms = int(doc["count"]), int(doc["terms"])
            raw = doc["ciphertexts"]
            cts = tuple(int.from_bytes(base64.b64decode(c, validate=True), "big") for c in raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise HeError(f"encrypted vector: malformed ({exc})") from exc
        k = layout.slots(key)
        if count < 0 or len(cts) != -(-count // k) or not 1 <= terms <= layout.max_terms:
            raise HeDecryptionError("encrypted vector: count/terms do not match the ciphertexts")
        for c in cts:
            PhePaillier().check_ciphertext(key, c)
        return cls(key, count, terms, layout, cts)
