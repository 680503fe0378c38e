"""SM2 digital signatures (SM2 数字签名算法, GB/T 32918.2-2016) with the signer's Z_A.

What is ours and what is the library's:

* Curve arithmetic (scalar multiplication, the sign/verify equations) is ``gmssl``'s
  :class:`gmssl.sm2.CryptSM2` (``sign(e, k)`` / ``verify(sig, e)`` take the *digest* e).
* SM3 (GB/T 32905-2016) is OpenSSL's, through ``cryptography`` (``hashes.SM3``).
* DER and PEM encodings are pycryptodomex's (``Cryptodome.Util.asn1``, ``Cryptodome.IO.PEM``),
  the library gmssl itself uses for DER signatures.
* Ours: Z_A and e (GB/T 32918.2 §5.5, §6.1 A1–A2), range checks, key validation, nonce choice
  from :mod:`secrets`, encodings and the key file policy.

Why we do not call ``CryptSM2.sign_with_sm3`` / ``verify_with_sm3`` (read in gmssl 3.2.2,
``gmssl/sm2.py``):

* its ``_sm3_z`` hard-codes ENTL ``0080`` and ID ``1234567812345678``: another signer ID is
  impossible;
* its nonce comes from ``func.random_hex`` = :func:`random.choice`, not a CSPRNG;
* its constructor strips the ``04`` prefix with ``str.lstrip("04")``, which also eats any
  leading ``0``/``4`` hex digits of x (11·G on the SM2 curve has x = ``04b3cb10…``), so we set
  ``public_key`` (x‖y hex) after construction;
* ``verify`` does not check r, s ∈ [1, n-1] (GB/T 32918.2 §7.1 B1–B2); we do.

Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A), ENTL_A = bit length of ID_A as two
bytes big-endian; e = SM3(Z_A ‖ M). Default ID ``1234567812345678`` (GM/T 0009-2012 §10,
OpenSSL's default ``distid``). Signatures are DER ``SEQUENCE { INTEGER r, INTEGER s }`` (GM/T
0009, what ``openssl pkeyutl -sign`` writes) from :func:`sm2_sign`, or raw r‖s (64 bytes) from
:func:`sm2_sign_raw`.

Cost (pure-Python gmssl, one core of the reference machine): key generation ≈ 8 ms (derive
d·G, then :class:`Sm2KeyPair` checks it again), sign ≈ 4 ms, verify ≈ 7.5 ms. Fine for audit checkpoints, tokens and job approvals; not for per-row use.
gmssl's scalar multiplication is not constant-time: keep signing keys on trusted hosts.

Errors: :class:`SignatureError` (a signing call failed or a key is malformed) and
:class:`privacy._errors.KeyConfigError` (the key file is unsafe or unreadable).
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from Cryptodome.IO import PEM
from Cryptodome.Util.asn1 import (
    DerBitString,
    DerInteger,
    DerObjectId,
    DerOctetString,
    DerSequence,
)
from cryptography.hazmat.primitives import hashes
from gmssl.sm2 import CryptSM2

from privacy._errors import KeyConfigError, PrivacyError

#: Default signer ID (默认用户身份标识), GM/T 0009-2012 §10; OpenSSL's default SM2 ``distid``.
DEFAULT_SIGNER_ID: Final = b"1234567812345678"

_OID_EC_PUBLIC_KEY: Final = "1.2.840.10045.2.1"
_OID_SM2: Final = "1.2.156.10197.1.301"


class SignatureError(PrivacyError):
    """An SM2 key or signing request is invalid (SM2 签名错误): malformed hex, a point off the
    curve, a private key out of [1, n-2], a nonce k that yields r = 0, r + k = n or s = 0, or
    a signer ID longer than 8191 bytes."""


@dataclass(frozen=True)
class Sm2Curve:
    """Domain parameters of a prime-field curve y² = x³ + ax + b over F_p (椭圆曲线参数).

    Attributes:
        name: label used in messages.
        p, a, b: field prime and coefficients (int).
        n: order of the base point G (int); cofactor 1 is assumed.
        gx, gy: affine coordinates of G (int).
        oid: ASN.1 object identifier, when the curve has one (for PEM encodings).
    """

    name: str
    p: int
    a: int
    b: int
    n: int
    gx: int
    gy: int
    oid: str | None = None

    def gmssl_table(self) -> dict[str, str]:
        """The curve as gmssl's ``ecc_table`` (fixed-width 64-digit hex strings)."""
        return {
            "n": f"{self.n:064X}",
            "p": f"{self.p:064X}",
            "g": f"{self.gx:064X}{self.gy:064X}",
            "a": f"{self.a:064X}",
            "b": f"{self.b:064X}",
        }

    def contains(self, x: int, y: int) -> bool:
        """Whether (x, y) is an affine point of the curve with coordinates in [0, p)."""
        return (
            0 <= x < self.p
            and 0 <= y < self.p
            and (y * y - (x * x * x + self.a * x + self.b)) % self.p == 0
        )


#: The recommended curve sm2p256v1 (SM2 推荐曲线), GB/T 32918.5-2017 §5 / GM/T 0003.5-2012.
SM2_CURVE: Final = Sm2Curve(
    name="sm2p256v1",
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    oid=_OID_SM2,
)


def _parse_public(public_key_hex: str, curve: Sm2Curve) -> tuple[int, int]:
    """Parse ``04‖x‖y`` (130 hex digits) and check the point is on ``curve``."""
    text = public_key_hex.strip().lower() if isinstance(public_key_hex, str) else ""
    if len(text) != 130 or not text.startswith("04"):
        raise SignatureError(
            f"SM2 public key (SM2 公钥) must be 130 hex digits '04'‖x‖y (uncompressed); "
            f"got {len(text)} characters starting {text[:4]!r}"
        )
    try:
        x, y = int(text[2:66], 16), int(text[66:], 16)
    except ValueError as exc:
        raise SignatureError("SM2 public key (SM2 公钥) is not hex") from exc
    if not curve.contains(x, y):
        raise SignatureError(f"SM2 public key (SM2 公钥) is not a point of curve {curve.name}")
    return x, y


def _parse_private(private_key_hex: str, curve: Sm2Curve) -> int:
    text = private_key_hex.strip() if isinstance(private_key_hex, str) else ""
    if len(text) != 64:
        raise SignatureError(
            f"SM2 private key (SM2 私钥) must be 64 hex digits; got {len(text)} characters"
        )
    try:
        d = int(text, 16)
    except ValueError as exc:
        raise SignatureError("SM2 private key (SM2 私钥) is not hex") from exc
    if not 1 <= d <= curve.n - 2:
        raise SignatureError(
            "SM2 private key (SM2 私钥) d must lie in [1, n-2] (GB/T 32918.1 §6.1)"
        )
    return d


def _public_hex(d: int, curve: Sm2Curve) -> str:
    """P = d·G through gmssl, as ``04‖x‖y`` lower-case hex."""
    xy = CryptSM2(private_key="", public_key="", ecc_table=curve.gmssl_table())._kg(
        d, curve.gmssl_table()["g"]
    )
    if xy is None:  # pragma: no cover - d in [1, n-2] never gives the point at infinity
        raise SignatureError("SM2 scalar multiplication returned the point at infinity")
    return "04" + xy.lower()


@dataclass(frozen=True)
class Sm2KeyPair:
    """An SM2 key pair (SM2 密钥对). The private key never appears in ``repr``.

    Construction checks that the private key lies in [1, n-2] and that the public key is
    d·G on ``curve`` (one scalar multiplication, ≈ 4 ms).

    Attributes:
        private_key_hex: d as 64 hex digits (big-endian).
        public_key_hex: P = d·G as 130 hex digits ``04‖x‖y`` (uncompressed, lower-case).
        curve: the domain parameters (default: the recommended curve, GB/T 32918.5).

    Raises:
        SignatureError: malformed hex, d out of range, or a public key that is not d·G.
    """

    private_key_hex: str = field(repr=False)
    public_key_hex: str
    curve: Sm2Curve = field(default=SM2_CURVE, repr=False)

    def __post_init__(self) -> None:
        d = _parse_private(self.private_key_hex, self.curve)
        _parse_public(self.public_key_hex, self.curve)
        if _public_hex(d, self.curve) != self.public_key_hex.strip().lower():
            raise SignatureError("SM2 key pair (SM2 密钥对): the public key is not d·G")
        object.__setattr__(self, "private_key_hex", f"{d:064x}")
        object.__setattr__(self, "public_key_hex", self.public_key_hex.strip().lower())


def sm2_keypair_from_private(private_key_hex: str, *, curve: Sm2Curve = SM2_CURVE) -> Sm2KeyPair:
    """Derive the key pair of a known private key (d → P = d·G).

    Args:
        private_key_hex: d as 64 hex digits, 1 ≤ d ≤ n-2.
        curve: domain parameters (default: the recommended curve).

    Returns:
        The :class:`Sm2KeyPair`.

    Raises:
        SignatureError: malformed or out-of-range d.
    """
    d = _parse_private(private_key_hex, curve)
    return Sm2KeyPair(f"{d:064x}", _public_hex(d, curve), curve)


def generate_sm2_keypair(*, curve: Sm2Curve = SM2_CURVE) -> Sm2KeyPair:
    """Generate a fresh SM2 key pair (生成 SM2 密钥对), GB/T 32918.1-2016 §6.1.

    d is drawn uniformly from [1, n-2] with :func:`secrets.randbelow` (the OS CSPRNG), P = d·G
    with gmssl.

    Args:
        curve: domain parameters (default: the recommended curve sm2p256v1).

    Returns:
        A new :class:`Sm2KeyPair`.
    """
    d = secrets.randbelow(curve.n - 2) + 1
    return Sm2KeyPair(f"{d:064x}", _public_hex(d, curve), curve)


def _sm3(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data)
    return digest.finalize()


def sm2_z_a(
    public_key_hex: str, signer_id: bytes = DEFAULT_SIGNER_ID, *, curve: Sm2Curve = SM2_CURVE
) -> bytes:
    """The signer's identity digest Z_A (用户杂凑值), GB/T 32918.2-2016 §5.5.

    Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A), ENTL_A = 8·len(ID_A) as two bytes
    big-endian, every field element as 32 bytes big-endian.

    Args:
        public_key_hex: the signer's public key, ``04‖x‖y`` (130 hex digits).
        signer_id: ID_A, bytes (default ``b"1234567812345678"``), at most 8191 bytes.
        curve: domain parameters (default: the recommended curve).

    Returns:
        Z_A, 32 bytes.

    Raises:
        SignatureError: a malformed public key, a point off the curve, or an ID too long.
    """
    if not isinstance(signer_id, bytes | bytearray):
        raise SignatureError(
            f"SM2 signer ID (用户身份标识) must be bytes, got {type(signer_id).__name__}"
        )
    if len(signer_id) * 8 > 0xFFFF:
        raise SignatureError(
            f"SM2 signer ID (用户身份标识) is {len(signer_id)} bytes; ENTL allows at most 8191"
        )
    x, y = _parse_public(public_key_hex, curve)
    fields = (curve.a, curve.b, curve.gx, curve.gy, x, y)
    return _sm3(
        (len(signer_id) * 8).to_bytes(2, "big")
        + bytes(signer_id)
        + b"".join(v.to_bytes(32, "big") for v in fields)
    )


def _digest_e(message: bytes, public_key_hex: str, signer_id: bytes, curve: Sm2Curve) -> bytes:
    if not isinstance(message, bytes | bytearray | memoryview):
        raise SignatureError(f"SM2 message (待签消息) must be bytes, got {type(message).__name__}")
    return _sm3(sm2_z_a(public_key_hex, signer_id, curve=curve) + bytes(message))


def sm2_sign_raw(
    message: bytes,
    keypair: Sm2KeyPair,
    *,
    signer_id: bytes = DEFAULT_SIGNER_ID,
    k: int | None = None,
) -> bytes:
    """Sign ``message`` with SM2 (SM2 签名), raw form r‖s. GB/T 32918.2-2016 §6.1.

    e = SM3(Z_A ‖ M); r = (e + x₁) mod n with (x₁, y₁) = k·G; s = (1 + d)⁻¹(k − r·d) mod n.

    Args:
        message: M, bytes of any length.
        keypair: the signer's key pair (its ``curve`` is used).
        signer_id: ID_A bound into Z_A (default ``b"1234567812345678"``).
        k: the nonce, only for reproducing published test vectors; ``None`` (the default)
            draws k uniformly from [1, n-1] with :mod:`secrets`. Never reuse a k.

    Returns:
        r‖s, 64 bytes (each 32 bytes big-endian).

    Raises:
        SignatureError: k out of range or degenerate (r = 0, r + k = n, s = 0), or bad inputs.
    """
    curve = keypair.curve
    e = _digest_e(message, keypair.public_key_hex, signer_id, curve)
    signer = CryptSM2(
        private_key=keypair.private_key_hex, public_key="", ecc_table=curve.gmssl_table()
    )
    if k is not None and not 1 <= k <= curve.n - 1:
        raise SignatureError("SM2 nonce k must lie in [1, n-1] (GB/T 32918.2 §6.1 A3)")
    while True:
        nonce = k if k is not None else secrets.randbelow(curve.n - 1) + 1
        try:
            rs = signer.sign(e, f"{nonce:064x}")
        except (TypeError, ValueError) as exc:  # pragma: no cover - gmssl internal failure
            raise SignatureError("SM2 signing failed inside gmssl") from exc
        if rs is not None:
            return bytes.fromhex(rs)
        if k is not None:
            raise SignatureError("SM2 nonce k gives r = 0, r + k = n or s = 0; choose another k")


def sm2_sign(
    message: bytes,
    keypair: Sm2KeyPair,
    *,
    signer_id: bytes = DEFAULT_SIGNER_ID,
    k: int | None = None,
) -> bytes:
    """Sign ``message`` with SM2 (SM2 签名), DER-encoded. GB/T 32918.2-2016 §6.1.

    Same as :func:`sm2_sign_raw`, encoded as DER ``SEQUENCE { INTEGER r, INTEGER s }``
    (GM/T 0009-2012 §7.3), the form ``openssl pkeyutl -sign`` writes and reads.

    Args:
        message: M, bytes.
        keypair: the signer's key pair.
        signer_id: ID_A (default ``b"1234567812345678"``).
        k: fixed nonce for test vectors only; ``None`` draws a fresh one.

    Returns:
        The DER signature, 8 to 72 bytes.

    Raises:
        SignatureError: as :func:`sm2_sign_raw`.
    """
    raw = sm2_sign_raw(message, keypair, signer_id=signer_id, k=k)
    return sm2_signature_to_der(raw)


def sm2_signature_to_der(raw: bytes) -> bytes:
    """Encode a raw r‖s signature (64 bytes) as DER ``SEQUENCE { INTEGER r, INTEGER s }``.

    Raises:
        SignatureError: ``raw`` is not 64 bytes.
    """
    if len(raw) != 64:
        raise SignatureError(f"raw SM2 signature must be 64 bytes r‖s, got {len(raw)}")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    return DerSequence([DerInteger(r), DerInteger(s)]).encode()


def sm2_signature_from_der(der: bytes) -> bytes:
    """Decode a DER SM2 signature into raw r‖s (64 bytes).

    Only the canonical (strict DER) encoding is accepted: a signature that re-encodes to other
    bytes is refused, so one signature has one encoding.

    Raises:
        SignatureError: not a strict DER ``SEQUENCE`` of two non-negative integers < 2²⁵⁶.
    """
    try:
        seq = DerSequence().decode(bytes(der), strict=True)
        r, s = seq[0], seq[1]
        ok = len(seq) == 2 and isinstance(r, int) and isinstance(s, int)
    except (ValueError, TypeError, IndexError, EOFError) as exc:
        raise SignatureError("SM2 signature is not DER SEQUENCE { INTEGER r, INTEGER s }") from exc
    if not ok or not (0 <= r < 1 << 256 and 0 <= s < 1 << 256):
        raise SignatureError("SM2 signature is not DER SEQUENCE { INTEGER r, INTEGER s }")
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if sm2_signature_to_der(raw) != bytes(der):
        raise SignatureError("SM2 signature DER encoding is not canonical")
    return raw


def sm2_verify_raw(
    message: bytes,
    signature: bytes,
    public_key_hex: str,
    *,
    signer_id: bytes = DEFAULT_SIGNER_ID,
    curve: Sm2Curve = SM2_CURVE,
) -> bool:
    """Verify a raw r‖s SM2 signature (SM2 验签). GB/T 32918.2-2016 §7.1.

    Args:
        message: M', bytes.
        signature: r‖s, 64 bytes.
        public_key_hex: the signer's key ``04‖x‖y``.
        signer_id: ID_A the signature was made with (default ``b"1234567812345678"``).
        curve: domain parameters (default: the recommended curve).

    Returns:
        True when the signature is valid for (M', ID_A, P_A); False for any invalid or
        malformed signature.

    Raises:
        SignatureError: a malformed public key (not hex, not ``04‖x‖y``, off the curve).
    """
    e = _digest_e(message, public_key_hex, signer_id, curve)
    if not isinstance(signature, bytes | bytearray) or len(signature) != 64:
        return False
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    if not (1 <= r < curve.n and 1 <= s < curve.n):  # B1, B2
        return False
    verifier = CryptSM2(private_key="", public_key="", ecc_table=curve.gmssl_table())
    verifier.public_key = public_key_hex.strip().lower()[2:]  # x‖y; see the module docstring
    try:
        return bool(verifier.verify(f"{r:064x}{s:064x}", e))
    except (TypeError, ValueError):  # point at infinity inside gmssl: not a valid signature
        return False


def sm2_verify(
    message: bytes,
    signature: bytes,
    public_key_hex: str,
    *,
    signer_id: bytes = DEFAULT_SIGNER_ID,
    curve: Sm2Curve = SM2_CURVE,
) -> bool:
    """Verify a DER-encoded SM2 signature (SM2 验签). GB/T 32918.2-2016 §7.1.

    Args:
        message: M', bytes.
        signature: DER ``SEQUENCE { INTEGER r, INTEGER s }`` as from :func:`sm2_sign` or
            ``openssl pkeyutl -sign``.
        public_key_hex: the signer's key ``04‖x‖y``.
        signer_id: ID_A (default ``b"1234567812345678"``).
        curve: domain parameters (default: the recommended curve).

    Returns:
        True when valid; False for an invalid, malformed or non-canonical signature.

    Raises:
        SignatureError: a malformed public key.
    """
    try:
        raw = sm2_signature_from_der(signature)
    except SignatureError:
        _digest_e(message, public_key_hex, signer_id, curve)  # still reject a bad key loudly
        return False
    return sm2_verify_raw(message, raw, public_key_hex, signer_id=signer_id, curve=curve)


# --- PEM (PKCS#8 private key, SubjectPublicKeyInfo public key), as OpenSSL 3 writes them -----


def _require_oid(curve: Sm2Curve) -> str:
    if curve.oid is None:
        raise SignatureError(f"curve {curve.name} has no OID; PEM encoding needs a named curve")
    return curve.oid


def sm2_public_key_to_pem(public_key_hex: str, *, curve: Sm2Curve = SM2_CURVE) -> bytes:
    """Encode a public key as a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo, RFC 5480 with the
    SM2 curve OID 1.2.156.10197.1.301), readable by ``openssl pkey -pubin``.

    Raises:
        SignatureError: a malformed public key or a curve without OID.
    """
    _parse_public(public_key_hex, curve)
    algorithm = DerSequence([DerObjectId(_OID_EC_PUBLIC_KEY), DerObjectId(_require_oid(curve))])
    spki = DerSequence([algorithm, DerBitString(bytes.fromhex(public_key_hex.strip()))])
    return PEM.encode(spki.encode(), "PUBLIC KEY").encode("ascii") + b"\n"


def sm2_private_key_to_pem(keypair: Sm2KeyPair) -> bytes:
    """Encode a key pair as an unencrypted PEM ``PRIVATE KEY`` (PKCS#8, RFC 5208, wrapping an
    RFC 5915 ECPrivateKey), the layout ``openssl genpkey -algorithm SM2`` writes.

    Raises:
        SignatureError: the key's curve has no OID.
    """
    oid = _require_oid(keypair.curve)
    ec_private = DerSequence(
        [
            DerInteger(1),
            DerOctetString(bytes.fromhex(keypair.private_key_hex)),
            DerBitString(bytes.fromhex(keypair.public_key_hex), explicit=1),
        ]
    )
    algorithm = DerSequence([DerObjectId(_OID_EC_PUBLIC_KEY), DerObjectId(oid)])
    pkcs8 = DerSequence([DerInteger(0), algorithm, DerOctetString(ec_private.encode())])
    return PEM.encode(pkcs8.encode(), "PRIVATE KEY").encode("ascii") + b"\n"


def sm2_keypair_from_pem(data: bytes) -> Sm2KeyPair:
    """Read an unencrypted PEM ``PRIVATE KEY`` (PKCS#8) holding an SM2 key on the
    recommended curve, as written by :func:`sm2_private_key_to_pem` or by
    ``openssl genpkey -algorithm SM2``.

    Returns:
        The :class:`Sm2KeyPair` (the public key is recomputed from d and, when the file holds
        one, compared with it).

    Raises:
        SignatureError: not such a PEM, another curve, or an inconsistent public key.
    """
    try:
        der, marker, encrypted = PEM.decode(data.decode("ascii"))
        if marker != "PRIVATE KEY" or encrypted:
            raise ValueError(f"expected an unencrypted 'PRIVATE KEY' PEM, got {marker!r}")
        outer = DerSequence().decode(der, strict=True)
        algorithm = DerSequence().decode(outer[1], strict=True)
        key_oid = DerObjectId().decode(algorithm[0], strict=True).value
        curve_oid = DerObjectId().decode(algorithm[1], strict=True).value
        if key_oid != _OID_EC_PUBLIC_KEY or curve_oid != _OID_SM2:
            raise ValueError(f"not an SM2 key (algorithm {key_oid}, curve {curve_oid})")
        inner = DerOctetString().decode(outer[2], strict=True).payload
        ec_private = DerSequence().decode(inner, strict=True)
        d_bytes = DerOctetString().decode(ec_private[1], strict=True).payload
        stored_public = None
        for element in list(ec_private)[2:]:
            if isinstance(element, bytes) and element[:1] == b"\xa1":
                stored_public = DerBitString(explicit=1).decode(element, strict=True).value
    except (ValueError, TypeError, IndexError, EOFError, UnicodeDecodeError) as exc:
        raise SignatureError(f"not an SM2 PKCS#8 private key PEM: {exc}") from exc
    keypair = sm2_keypair_from_private(d_bytes.rjust(32, b"\0").hex())
    if stored_public is not None and stored_public.hex() != keypair.public_key_hex:
        raise SignatureError("SM2 PEM: the stored public key is not d·G")
    return keypair


def load_or_create_signing_key(path: Path) -> Sm2KeyPair:
    """Load the platform's SM2 signing key (平台签名密钥), creating it on first use.

    The key is a PEM PKCS#8 file (see :func:`sm2_private_key_to_pem`) with mode 0600. A new
    key is written with ``O_CREAT | O_EXCL`` and mode 0600 (no window where others could read
    it); an existing file readable or writable by group or others is refused.

    Args:
        path: the key file, e.g. ``<GOVDX_HOME>/keys/audit-sm2.pem``; its parent is created
            (mode 0700) when missing.

    Returns:
        The :class:`Sm2KeyPair` on the recommended curve.

    Raises:
        KeyConfigError: the file is group/other-accessible, not a regular file, unreadable, or
            not an SM2 private key PEM (the message names the path).
    """
    path = Path(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
    except FileExistsError:
        pass
    except OSError as exc:
        raise KeyConfigError(f"{path}: cannot create the SM2 signing key file: {exc}") from exc
    else:
        keypair = generate_sm2_keypair()
        with os.fdopen(fd, "wb") as handle:
            handle.write(sm2_private_key_to_pem(keypair))
            handle.flush()
            os.fsync(handle.fileno())
        return keypair
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise KeyConfigError(f"{path}: cannot open the SM2 signing key file: {exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyConfigError(f"{path}: the SM2 signing key is not a regular file")
        if info.st_mode & 0o077:
            raise KeyConfigError(
                f"{path}: the SM2 signing key (签名私钥) has mode {stat.S_IMODE(info.st_mode):04o}; "
                "it must not be accessible to group or others (chmod 600)"
            )
        data = handle.read()
    try:
        return sm2_keypair_from_pem(data)
    except SignatureError as exc:
        raise KeyConfigError(f"{path}: {exc}") from exc
