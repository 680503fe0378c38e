"""Private set intersection (隐私集合求交, PSI) between a requester and a dataset in the sandbox.

The requester (e.g. a bank, on its own machine) holds identifiers ``X`` (its applicants' USCCs,
统一社会信用代码); the sandbox holds a dataset column ``Y`` (the tax department's taxpayers). The
requester learns ``|X ∩ Y|`` (cardinality mode, 交集数量) or, when the dataset's policy allows,
which of its own items are in ``Y`` (reveal mode, 交集明细); the platform never sees ``X`` in
plaintext and the requester never receives ``Y``.

Protocol: ECDH-PSI (Diffie-Hellman style PSI: Meadows 1986; Huberman, Franklin & Hogg 1999) as
implemented by OpenMined PSI (``openmined-psi`` 2.x, P-256 commutative cipher from Google's
private-join-and-compute, server set in a Golomb-compressed set (GCS) filter)::

    client (bank)                                  server (sandbox, per psi_serve call)
    key a; request = [H(x)^a for x in X_b]   ───►  key b (fresh)
                                                   setup_b    = GCS{ H(y)^b : y in Y_b }
                                                   response_b = [ (H(x)^a)^b ]  (sorted in
                                             ◄───               cardinality mode, in order in
    unblind: H(x)^b = response^(1/a);                           reveal mode)
    count / list the hits in setup_b

Everything is bucketed by a *public* hash, ``bucket(v) = SM3(v)[0:4] as uint32 big-endian mod B``,
so bucket ``b`` of the client only meets bucket ``b`` of the server; within a bucket the
elementwise work (blinding, re-blinding, unblinding) is split into chunks run in a
:class:`concurrent.futures.ProcessPoolExecutor` (forkserver start method, top-level worker
functions, messages passed as bytes). What bucketing leaks is in docs/psi.md.

Errors::

    privacy.PrivacyError
    └── PsiError                a malformed/truncated message, a library failure, a bad argument
        └── PsiPolicyError      refused by policy: over ``max_items``, reveal not allowed,
                                too many buckets

Message formats: docs/psi.md. Library doc: https://github.com/OpenMined/PSI (python/README).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import multiprocessing
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from privacy._errors import PrivacyError

__all__ = [
    "PSI_ELEMENTS",
    "PSI_FORMAT_VERSION",
    "NormalizedSet",
    "PsiClientSession",
    "PsiError",
    "PsiOutcome",
    "PsiPolicyError",
    "PsiRequest",
    "PsiResponse",
    "normalize_identifiers",
    "psi_bucket_of",
    "psi_serve",
]

PSI_FORMAT_VERSION = 1
"""Version byte of the :class:`PsiRequest`/:class:`PsiResponse` envelope (docs/psi.md)."""

PSI_ELEMENTS = ("identifier", "resident_id", "uscc")
"""Data elements :func:`normalize_identifiers` knows: ``identifier`` (canonical form only),
``resident_id`` (公民身份号码, GB 11643-1999) and ``uscc`` (统一社会信用代码, GB 32100-2015)."""

_MAGIC = b"GDXP"
_KIND_REQUEST = ord("Q")
_KIND_RESPONSE = ord("R")
_PREFIX = struct.Struct(">4sBBI")  # magic, version, kind, header length
_FRAME = struct.Struct(">I")
_MAX_HEADER_BYTES = 1 << 20
_MAX_BUCKETS = 1024
_BUCKET_HASH = "sm3-be32-mod"
_DATA_STRUCTURE = "gcs"
_SESSION_FORMAT = "govdx-psi-client-session"
_MIN_CHUNK = 2048  # items per worker task; below this the per-task overhead dominates
# relative cost per item of the library's steps, measured on this machine (µs): hash-to-curve
# + exponentiation ≈ 65, exponentiation alone ≈ 42; used to order tasks longest-first.
_COST_SETUP = 65
_COST_EXP = 42
# Unicode whitespace, separators, controls and format characters (NBSP, U+3000, ZWSP, BOM)
_STRIP_RE = r"[\s\p{Z}\p{Cc}\p{Cf}]+"


class PsiError(PrivacyError):
    """A PSI run or message failed (隐私集合求交错误): malformed, truncated or mismatched
    message, bad argument, or an error of the OpenMined PSI library (translated)."""


class PsiPolicyError(PsiError):
    """A PSI request refused by policy (策略拒绝): over the ``max_items`` cap, reveal mode not
    allowed for the dataset, or more buckets than allowed.

    Attributes:
        limit: the cap that was exceeded (items or buckets), or ``None``.
        actual: the offending size, or ``None``.
    """

    def __init__(self, message: str, *, limit: int | None = None, actual: int | None = None):
        self.limit = limit
        self.actual = actual
        super().__init__(message)


# --- normalisation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class NormalizedSet:
    """Result of :func:`normalize_identifiers`.

    Attributes:
        items: canonical, distinct, accepted values in order of first occurrence (list[str]).
        rejected: ``(index, reason)`` of each input value refused by the element's check,
            ``index`` 0-based in the input iterable; reasons never quote the value.
        empty: number of inputs dropped as ``None`` or empty after stripping.
        duplicates: number of accepted inputs dropped as repeats of an earlier item.
    """

    items: list[str]
    rejected: list[tuple[int, str]] = field(default_factory=list)
    empty: int = 0
    duplicates: int = 0


def normalize_identifiers(values: Iterable[str | None], *, element: str) -> NormalizedSet:
    """Canonical form of identifiers before PSI; both sides use it so formatting never hides a match.

    Steps (vectorized with pyarrow compute): Unicode NFKC (full-width ``９１３５`` → ``9135``,
    ``Ａ`` → ``A``, U+3000 and NBSP → space), remove every whitespace, separator, control and
    format character (also inside the value, e.g. ``"9135 0100"``; zero-width space, BOM),
    upper-case, NFKC again (a removed space may leave a combining mark that composes), drop
    empties, check the element, de-duplicate keeping the first occurrence.
    Checks: ``uscc`` = :func:`quality.is_valid_uscc` (GB 32100-2015, vectorized as
    :func:`quality.uscc_checks`), ``resident_id`` = :func:`quality.is_valid_resident_id`
    (GB 11643-1999, :func:`quality.resident_id_checks`), ``identifier`` = no check.
    Idempotent: ``normalize(normalize(v).items).items == normalize(v).items``.

    Args:
        values: iterable[n] of ``str`` or ``None``.
        element: one of :data:`PSI_ELEMENTS`.

    Returns:
        :class:`NormalizedSet` with ``items`` (list[str], ≤ n) and ``rejected``
        (list[(input index, reason)]), reasons in English and Chinese.

    Raises:
        PsiError: unknown ``element``, or a value that is neither ``str`` nor ``None``.

    Examples:
        >>> normalize_identifiers([" 91350100m000100y43", "９１３５０１００Ｍ０００１００Ｙ４３",
        ...                        None, "91350100M000100Y44"], element="uscc")
        ... # doctest: +NORMALIZE_WHITESPACE
        NormalizedSet(items=['91350100M000100Y43'],
                      rejected=[(3, 'check character mismatch (校验码错误)')], empty=1,
                      duplicates=1)
    """
    if element not in PSI_ELEMENTS:
        raise PsiError(f"unknown PSI element {element!r}; expected one of {PSI_ELEMENTS}")
    seq = values if isinstance(values, list) else list(values)
    try:
        arr = pa.array(seq, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        bad = next((i for i, v in enumerate(seq) if v is not None and not isinstance(v, str)), -1)
        raise PsiError(
            f"normalize_identifiers: value at index {bad} is {type(seq[bad]).__name__}, "
            "expected str or None (标识符必须是字符串)"
        ) from exc
    stripped = pc.replace_substring_regex(
        pc.utf8_normalize(arr, form="NFKC"), pattern=_STRIP_RE, replacement=""
    )
    # NFKC again: removing a space may leave a combining mark that now composes ("C¸" → "Ç")
    norm = pc.utf8_normalize(pc.utf8_upper(stripped), form="NFKC")
    lengths = pc.fill_null(pc.utf8_length(norm), 0).to_numpy(zero_copy_only=False)
    present = lengths > 0
    ok = present.copy()
    rejected: list[tuple[int, str]] = []
    if element != "identifier" and present.any():
        ok, rejected = _check_element(norm, lengths, present, element)
    kept = norm.filter(pa.array(ok))
    items = pc.unique(kept).to_pylist() if len(kept) else []
    return NormalizedSet(
        items=items,
        rejected=rejected,
        empty=int((~present).sum()),
        duplicates=len(kept) - len(items),
    )


def _check_element(
    norm: pa.Array, lengths: np.ndarray, present: np.ndarray, element: str
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Accepted mask (bool[n]) and the reasons of the rejected, via the quality checks."""
    from quality import resident_id_checks, uscc_checks

    if element == "uscc":
        t = uscc_checks(norm)
        cols = ("well_formed", "check_ok", "org_code_ok")
    else:
        t = resident_id_checks(norm)
        cols = ("well_formed", "check_ok", "birth_date_ok")
    flags = {c: pc.fill_null(t[c], False).to_numpy(zero_copy_only=False) for c in (*cols, "valid")}
    ok = present & flags["valid"]
    rejected: list[tuple[int, str]] = []
    for i in np.flatnonzero(present & ~ok).tolist():
        n = int(lengths[i])
        if n != 18:
            if element == "resident_id" and n == 15:
                reason = "legacy 15-digit number, upgrade to 18 first (15位旧号码)"
            else:
                reason = f"length {n}, expected 18 (长度错误)"
        elif not flags[cols[0]][i]:
            reason = "character outside the allowed set (字符集错误)"
        elif not flags[cols[1]][i]:
            reason = "check character mismatch (校验码错误)"
        elif element == "uscc":
            reason = "organisation code check mismatch (组织机构代码校验码错误)"
        else:
            reason = "birth date is not a calendar date (出生日期错误)"
        rejected.append((i, reason))
    return ok, rejected


def psi_bucket_of(items: Sequence[str], buckets: int) -> np.ndarray:
    """Public bucket of each item: ``uint32_be(SM3(utf8(item))[0:4]) mod buckets``.

    Args:
        items: sequence[n] of normalized identifiers.
        buckets: bucket count B ≥ 1.

    Returns:
        ``numpy.ndarray[n]`` of int64 in ``[0, B)``; all zeros when B = 1 (no hashing).

    Source: SM3 (GB/T 32905-2016) through OpenSSL (:func:`hashlib.new`).
    """
    if buckets == 1:
        return np.zeros(len(items), dtype=np.int64)
    sm3 = hashlib.new
    heads = b"".join([sm3("sm3", s.encode("utf-8")).digest()[:4] for s in items])
    return (np.frombuffer(heads, dtype=">u4").astype(np.int64) % buckets).astype(np.int64)


# --- messages -----------------------------------------------------------------------------------
def _pb():
    """The OpenMined PSI protobuf classes (ServerSetup, Request, Response)."""
    from private_set_intersection.python import Request, Response, ServerSetup

    return Request, Response, ServerSetup


def _pack(kind: int, header: dict[str, Any], frames: Sequence[bytes]) -> bytes:
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode("utf-8")
    parts = [_PREFIX.pack(_MAGIC, PSI_FORMAT_VERSION, kind, len(head)), head]
    for f in frames:
        parts.append(_FRAME.pack(len(f)))
        parts.append(f)
    return b"".join(parts)


def _unpack(data: bytes, kind: int, what: str) -> tuple[dict[str, Any], list[bytes]]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PsiError(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size:
        raise PsiError(f"{what}: truncated message ({len(data)} bytes, 消息被截断)")
    magic, version, got_kind, hlen = _PREFIX.unpack_from(data)
    if magic != _MAGIC:
        raise PsiError(f"{what}: not a govdx PSI message (bad magic {magic!r})")
    if version != PSI_FORMAT_VERSION:
        raise PsiError(
            f"{what}: unsupported message version {version}, expected {PSI_FORMAT_VERSION} "
            "(消息版本不支持)"
        )
    if got_kind != kind:
        raise PsiError(f"{what}: message kind {chr(got_kind)!r}, expected {chr(kind)!r}")
    if hlen > _MAX_HEADER_BYTES or _PREFIX.size + hlen > len(data):
        raise PsiError(f"{what}: truncated header ({hlen} bytes declared, 消息被截断)")
    try:
        header = json.loads(data[_PREFIX.size : _PREFIX.size + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PsiError(f"{what}: header is not UTF-8 JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise PsiError(f"{what}: header must be a JSON object")
    frames: list[bytes] = []
    pos = _PREFIX.size + hlen
    while pos < len(data):
        if pos + _FRAME.size > len(data):
            raise PsiError(f"{what}: truncated frame length at byte {pos} (消息被截断)")
        (n,) = _FRAME.unpack_from(data, pos)
        pos += _FRAME.size
        if pos + n > len(data):
            raise PsiError(
                f"{what}: truncated frame {len(frames)}: {n} bytes declared, "
                f"{len(data) - pos} left (消息被截断)"
            )
        frames.append(data[pos : pos + n])
        pos += n
    return header, frames


def _header_field(header: dict[str, Any], key: str, typ: type | tuple[type, ...], what: str) -> Any:
    if key not in header:
        raise PsiError(f"{what}: header key {key!r} missing")
    value = header[key]
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise PsiError(f"{what}: header key {key!r} has the wrong type ({value!r})")
    return value


def _header_sizes(header: dict[str, Any], what: str) -> tuple[int, ...]:
    buckets = _header_field(header, "buckets", int, what)
    if not 1 <= buckets <= _MAX_BUCKETS:
        raise PsiError(f"{what}: bucket count {buckets} outside 1..{_MAX_BUCKETS}")
    sizes = _header_field(header, "sizes", list, what)
    if len(sizes) != buckets or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sizes
    ):
        raise PsiError(
            f"{what}: header 'sizes' must list {buckets} non-negative counts (bucket count "
            f"mismatch, 分桶数不一致), got {len(sizes)}"
        )
    return tuple(sizes)


def _parse_pb(cls: Any, raw: bytes, what: str) -> Any:
    from google.protobuf.message import DecodeError

    try:
        return cls.FromString(raw)
    except DecodeError as exc:
        raise PsiError(f"{what}: not a valid {cls.DESCRIPTOR.full_name} protobuf: {exc}") from exc


@dataclass(frozen=True)
class PsiRequest:
    """The requester's message: its items blinded by its secret key, bucket by bucket.

    Attributes:
        reveal_intersection: the requester asks for the intersection items (reveal mode),
            not only its size.
        element: the data element both sides normalize with (:data:`PSI_ELEMENTS`).
        bucket_sizes: items per bucket, tuple[B] of int (public; see docs/psi.md).
        frames: tuple[B] of serialized ``psi_proto.Request`` (33-byte compressed P-256 points,
            ≈ 35 bytes per item on the wire).
    """

    reveal_intersection: bool
    element: str
    bucket_sizes: tuple[int, ...]
    frames: tuple[bytes, ...]

    @property
    def buckets(self) -> int:
        """Bucket count B."""
        return len(self.bucket_sizes)

    @property
    def size(self) -> int:
        """Total number of (distinct, normalized) client items."""
        return sum(self.bucket_sizes)

    def to_bytes(self) -> bytes:
        """Serialize to the versioned envelope of docs/psi.md (bytes; ≈ 35 B per item + header)."""
        header = {
            "bucket_hash": _BUCKET_HASH,
            "buckets": self.buckets,
            "element": self.element,
            "reveal_intersection": self.reveal_intersection,
            "sizes": list(self.bucket_sizes),
        }
        return _pack(_KIND_REQUEST, header, self.frames)

    def sm3(self) -> str:
        """SM3 hex digest (64 chars) of :meth:`to_bytes`; binds a response to its request."""
        return hashlib.new("sm3", self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> PsiRequest:
        """Parse and validate a request envelope.

        Args:
            data: bytes from :meth:`to_bytes` (the platform carries them base64 in JSON).

        Returns:
            The :class:`PsiRequest`.

        Raises:
            PsiError: bad magic, wrong version, wrong kind, truncated, header keys missing or
                mistyped, bucket count mismatch between header and frames, a frame that is not
                a ``psi_proto.Request``, an element count or reveal flag differing from the
                header.
        """
        what = "PSI request"
        header, frames = _unpack(data, _KIND_REQUEST, what)
        sizes = _header_sizes(header, what)
        reveal = _header_field(header, "reveal_intersection", bool, what)
        element = _header_field(header, "element", str, what)
        if element not in PSI_ELEMENTS:
            raise PsiError(f"{what}: unknown element {element!r}")
        if header.get("bucket_hash") != _BUCKET_HASH:
            raise PsiError(f"{what}: unsupported bucket hash {header.get('bucket_hash')!r}")
        if len(frames) != len(sizes):
            raise PsiError(f"{what}: {len(frames)} frames for {len(sizes)} buckets (分桶数不一致)")
        request_cls = _pb()[0]
        for b, (raw, n) in enumerate(zip(frames, sizes, strict=True)):
            msg = _parse_pb(request_cls, raw, f"{what} bucket {b}")
            if len(msg.encrypted_elements) != n:
                raise PsiError(
                    f"{what} bucket {b}: {len(msg.encrypted_elements)} elements, header says {n}"
                )
            if n and msg.reveal_intersection != reveal:
                raise PsiError(f"{what} bucket {b}: reveal flag differs from the header")
        return cls(reveal, element, sizes, tuple(frames))


@dataclass(frozen=True)
class PsiResponse:
    """The server's message: per bucket, the GCS filter of its blinded items and the client's
    items re-blinded by the server key.

    Attributes:
        reveal_intersection: mode the server answered in (equals the request's).
        fpr: false-positive probability for the whole query (per bucket ``fpr / B``).
        bucket_sizes: the client's items per bucket, echoed (tuple[B] of int).
        request_sm3: SM3 hex digest of the request bytes this answers.
        setups: tuple[B] of serialized ``psi_proto.ServerSetup`` (GCS; ``b""`` for an empty
            client bucket).
        responses: tuple[B] of serialized ``psi_proto.Response`` (one 33-byte point per client
            item of the bucket; sorted in cardinality mode, in request order in reveal mode).
    """

    reveal_intersection: bool
    fpr: float
    bucket_sizes: tuple[int, ...]
    request_sm3: str
    setups: tuple[bytes, ...]
    responses: tuple[bytes, ...]

    @property
    def buckets(self) -> int:
        """Bucket count B."""
        return len(self.bucket_sizes)

    def to_bytes(self) -> bytes:
        """Serialize to the versioned envelope of docs/psi.md (bytes)."""
        header = {
            "buckets": self.buckets,
            "data_structure": _DATA_STRUCTURE,
            "fpr": self.fpr,
            "request_sm3": self.request_sm3,
            "reveal_intersection": self.reveal_intersection,
            "sizes": list(self.bucket_sizes),
        }
        frames = [f for pair in zip(self.setups, self.responses, strict=True) for f in pair]
        return _pack(_KIND_RESPONSE, header, frames)

    @classmethod
    def from_bytes(cls, data: bytes) -> PsiResponse:
        """Parse and validate a response envelope.

        Args:
            data: bytes from :meth:`to_bytes`.

        Returns:
            The :class:`PsiResponse`.

        Raises:
            PsiError: bad magic, wrong version or kind, truncated, header keys missing or
                mistyped, ``2·B`` frames expected, a frame that is not a ``ServerSetup`` /
                ``Response``, or an element count differing from the header.
        """
        what = "PSI response"
        header, frames = _unpack(data, _KIND_RESPONSE, what)
        sizes = _header_sizes(header, what)
        reveal = _header_field(header, "reveal_intersection", bool, what)
        fpr = float(_header_field(header, "fpr", (int, float), what))
        if not 0.0 < fpr < 1.0:
            raise PsiError(f"{what}: fpr {fpr} outside (0, 1)")
        digest = _header_field(header, "request_sm3", str, what)
        if header.get("data_structure") != _DATA_STRUCTURE:
            raise PsiError(f"{what}: unsupported data structure {header.get('data_structure')!r}")
        if len(frames) != 2 * len(sizes):
            raise PsiError(
                f"{what}: {len(frames)} frames for {len(sizes)} buckets, expected "
                f"{2 * len(sizes)} (分桶数不一致)"
            )
        setups, responses = tuple(frames[0::2]), tuple(frames[1::2])
        _, response_cls, setup_cls = _pb()
        for b, n in enumerate(sizes):
            _parse_pb(setup_cls, setups[b], f"{what} bucket {b} setup")
            msg = _parse_pb(response_cls, responses[b], f"{what} bucket {b}")
            if len(msg.encrypted_elements) != n:
                raise PsiError(
                    f"{what} bucket {b}: {len(msg.encrypted_elements)} elements, header says {n}"
                )
        return cls(reveal, fpr, sizes, digest, setups, responses)


@dataclass(frozen=True)
class PsiOutcome:
    """What the requester learns.

    Attributes:
        cardinality: ``|X ∩ Y|`` (items), 0 ≤ cardinality ≤ min(|X|, |Y|) up to the fpr.
        intersection: in reveal mode, the client's own normalized items found in ``Y`` in the
            client's order; ``None`` in cardinality mode.
    """

    cardinality: int
    intersection: list[str] | None = None


# --- worker functions (top level: picklable under spawn/forkserver) -----------------------------
def _w_request(key: bytes, reveal: bool, items: list[str]) -> bytes:
    from private_set_intersection.python import client

    return client.CreateFromKey(key, reveal).CreateRequest(items).SerializeToString()


def _w_setup(key: bytes, reveal: bool, fpr: float, n_client: int, items: list[str]) -> bytes:
    from private_set_intersection.python import DataStructure, server

    srv = server.CreateFromKey(key, reveal)
    return srv.CreateSetupMessage(fpr, n_client, items, DataStructure.GCS).SerializeToString()


def _w_process(key: bytes, reveal: bool, request: bytes) -> bytes:
    from private_set_intersection.python import Request, server

    return (
        server.CreateFromKey(key, reveal)
        .ProcessRequest(Request.FromString(request))
        .SerializeToString()
    )


def _w_finish(key: bytes, reveal: bool, setup: bytes, response: bytes) -> int | list[int]:
    from private_set_intersection.python import Response, ServerSetup, client

    cl = client.CreateFromKey(key, reveal)
    s, r = ServerSetup.FromString(setup), Response.FromString(response)
    return list(cl.GetIntersection(s, r)) if reveal else int(cl.GetIntersectionSize(s, r))


_FORKSERVER_READY = False


def _pool(processes: int) -> ProcessPoolExecutor:
    """A process pool on the forkserver start method (no fork of a threaded parent; the server
    preloads this module once per parent process, so later pools start fast)."""
    global _FORKSERVER_READY
    ctx = multiprocessing.get_context("forkserver")
    if not _FORKSERVER_READY:
        ctx.set_forkserver_preload(["private_set_intersection.python", "privacy._psi"])
        _FORKSERVER_READY = True
    return ProcessPoolExecutor(max_workers=processes, mp_context=ctx)


def _run(tasks: list[tuple[Callable[..., Any], tuple[Any, ...]]], processes: int) -> list[Any]:
    """Run ``fn(*args)`` for each task (in order given = longest first) and return the results
    in that order; in-process when ``processes == 1`` or there is a single task."""
    try:
        if processes <= 1 or len(tasks) <= 1:
            return [fn(*args) for fn, args in tasks]
        with _pool(min(processes, len(tasks))) as ex:
            futures = [ex.submit(fn, *args) for fn, args in tasks]
            return [f.result() for f in futures]
    except BrokenProcessPool as exc:
        raise PsiError(f"PSI worker process died: {exc}") from exc
    except RuntimeError as exc:  # the library reports every failure as RuntimeError
        raise PsiError(f"OpenMined PSI failed: {exc}") from exc


def _chunks(n: int, total: int, processes: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges splitting ``n`` items so that ``total`` items over all buckets
    give about ``2 · processes`` tasks of at least ``_MIN_CHUNK`` items."""
    if n == 0:
        return []
    size = max(_MIN_CHUNK, math.ceil(total / (2 * processes))) if processes > 1 else n
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _check_processes(processes: int) -> None:
    if not isinstance(processes, int) or processes < 1:
        raise PsiError(f"processes must be an int ≥ 1, got {processes!r}")


def _new_key(role: str, reveal: bool) -> bytes:
    """A fresh 32-byte P-256 scalar from the library's own CSPRNG (never hand-rolled)."""
    from private_set_intersection.python import client, server

    factory = client if role == "client" else server
    return bytes(factory.CreateWithNewKey(reveal).GetPrivateKeyBytes())


# --- client (requester side) --------------------------------------------------------------------
class PsiClientSession:
    """The requester's side of one PSI run: its secret key and its items, kept between the
    request and the response (on the requester's machine; never sent to the platform).

    Create with :meth:`create`, send ``request.to_bytes()``, later :meth:`finish` with the
    :class:`PsiResponse`. :meth:`save`/:meth:`load` keep the session across processes.

    Attributes:
        reveal_intersection: the mode asked for.
        element: data element used for normalization.
        items: list[str] of the client's normalized, distinct items (request order).
        bucket_of: list[int] bucket of each item (same length as ``items``).
        buckets: bucket count B.
        request_sm3: SM3 hex digest of the request bytes (binds the response).
        rejected: ``(index, reason)`` of inputs refused by normalization (not saved).
    """

    def __init__(
        self,
        *,
        key: bytes,
        reveal_intersection: bool,
        element: str,
        items: list[str],
        bucket_of: list[int],
        buckets: int,
        request_sm3: str,
        rejected: list[tuple[int, str]] | None = None,
    ) -> None:
        self._key = key
        self.reveal_intersection = reveal_intersection
        self.element = element
        self.items = items
        self.bucket_of = bucket_of
        self.buckets = buckets
        self.request_sm3 = request_sm3
        self.rejected = list(rejected or [])

    def __repr__(self) -> str:  # never print the key or the items
        return (
            f"PsiClientSession(items={len(self.items)}, buckets={self.buckets}, "
            f"reveal_intersection={self.reveal_intersection}, element={self.element!r})"
        )

    def _positions(self) -> list[list[int]]:
        """Indices into ``items`` of each bucket, in item order."""
        pos: list[list[int]] = [[] for _ in range(self.buckets)]
        for i, b in enumerate(self.bucket_of):
            pos[b].append(i)
        return pos

    @classmethod
    def create(
        cls,
        items: Iterable[str | None],
        *,
        reveal_intersection: bool,
        buckets: int = 1,
        element: str = "identifier",
        processes: int = 1,
    ) -> tuple[PsiClientSession, PsiRequest]:
        """Normalize the items, draw a secret key and blind the items (``H(x)^a`` on P-256).

        Args:
            items: iterable[n] of client identifiers (raw; normalized here with
                :func:`normalize_identifiers`, duplicates and empties dropped).
            reveal_intersection: ask for the intersection items, not only the count.
            buckets: bucket count B, 1..1024 (the server caps it: ``max_buckets``).
            element: data element (:data:`PSI_ELEMENTS`); sent in the request so the server
                normalizes with the same rules. Rejected items are in ``session.rejected``.
            processes: worker processes for the blinding (1 = in-process).

        Returns:
            ``(session, request)``; the request is ≈ 35 bytes per distinct item.

        Raises:
            PsiError: bad ``buckets``/``processes``/``element``, non-string item, or a library
                failure.
        """
        if not isinstance(buckets, int) or not 1 <= buckets <= _MAX_BUCKETS:
            raise PsiError(f"buckets must be an int in 1..{_MAX_BUCKETS}, got {buckets!r}")
        _check_processes(processes)
        reveal = bool(reveal_intersection)
        ns = normalize_identifiers(items, element=element)
        bucket_of = psi_bucket_of(ns.items, buckets).tolist()
        key = _new_key("client", reveal)
        proto = cls(
            key=key,
            reveal_intersection=reveal,
            element=element,
            items=ns.items,
            bucket_of=bucket_of,
            buckets=buckets,
            request_sm3="",
            rejected=ns.rejected,
        )
        per_bucket = [[ns.items[i] for i in pos] for pos in proto._positions()]
        tasks, owners = [], []
        for b, its in enumerate(per_bucket):
            for lo, hi in _chunks(len(its), len(ns.items), processes):
                tasks.append((_w_request, (key, reveal, its[lo:hi])))
                owners.append(b)
        results = _run(tasks, processes)
        request_cls = _pb()[0]
        frames = []
        for b in range(buckets):
            parts = [r for r, o in zip(results, owners, strict=True) if o == b]
            merged = request_cls.FromString(b"".join(parts))
            merged.reveal_intersection = reveal
            frames.append(merged.SerializeToString())
        request = PsiRequest(reveal, element, tuple(len(x) for x in per_bucket), tuple(frames))
        proto.request_sm3 = request.sm3()
        return proto, request

    def finish(self, response: PsiResponse | bytes, *, processes: int = 1) -> PsiOutcome:
        """Unblind the server's response and count (or list) the hits in its filters.

        Args:
            response: the :class:`PsiResponse` (or its bytes) answering this session's request.
            processes: worker processes for the unblinding (1 = in-process).

        Returns:
            :class:`PsiOutcome`; ``intersection`` only in reveal mode.

        Raises:
            PsiError: the response answers another request (SM3 mismatch), has another mode,
                bucket count or bucket sizes, a count exceeds the bucket, or the library fails.
        """
        _check_processes(processes)
        if not isinstance(response, PsiResponse):
            response = PsiResponse.from_bytes(response)
        if response.request_sm3 != self.request_sm3:
            raise PsiError(
                "PSI response answers another request (request_sm3 "
                f"{response.request_sm3[:16]}… ≠ {self.request_sm3[:16]}…, 响应与请求不匹配)"
            )
        if response.reveal_intersection != self.reveal_intersection:
            raise PsiError("PSI response mode differs from the request's reveal_intersection")
        positions = self._positions()
        sizes = tuple(len(p) for p in positions)
        if response.bucket_sizes != sizes:
            raise PsiError(f"PSI response bucket sizes {response.bucket_sizes} ≠ request {sizes}")
        _, response_cls, _ = _pb()
        tasks, owners = [], []
        total = len(self.items)
        for b, n in enumerate(sizes):
            if n == 0:
                continue
            elements = list(response_cls.FromString(response.responses[b]).encrypted_elements)
            for lo, hi in _chunks(n, total, processes):
                part = response_cls()
                part.encrypted_elements.extend(elements[lo:hi])
                args = (self._key, self.reveal_intersection, response.setups[b])
                tasks.append((_w_finish, (*args, part.SerializeToString())))
                owners.append((b, lo, hi))
        results = _run(tasks, processes)
        cardinality = 0
        hits: list[int] = []
        for res, (b, lo, hi) in zip(results, owners, strict=True):
            if self.reveal_intersection:
                idx = sorted(set(res))
                if idx and not 0 <= idx[0] <= idx[-1] < hi - lo:
                    raise PsiError(f"PSI bucket {b}: index out of range from the library")
                hits.extend(positions[b][lo + i] for i in idx)
                count = len(idx)
            else:
                count = int(res)
            if not 0 <= count <= hi - lo:
                raise PsiError(f"PSI bucket {b}: cardinality {count} exceeds {hi - lo} items")
            cardinality += count
        if cardinality > total:  # cannot happen after the per-chunk checks; kept as a guard
            raise PsiError(f"PSI cardinality {cardinality} exceeds the {total} client items")
        if not self.reveal_intersection:
            return PsiOutcome(cardinality=cardinality, intersection=None)
        return PsiOutcome(
            cardinality=cardinality, intersection=[self.items[i] for i in sorted(hits)]
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the session (secret key base64, items, bucket assignment) as JSON, mode 0600.

        Args:
            path: file to write (created or replaced; its parent must exist).

        Returns:
            The path written.

        Raises:
            PsiError: the file cannot be written.
        """
        p = Path(path)
        doc = {
            "format": _SESSION_FORMAT,
            "version": PSI_FORMAT_VERSION,
            "reveal_intersection": self.reveal_intersection,
            "element": self.element,
            "buckets": self.buckets,
            "key_b64": base64.b64encode(self._key).decode("ascii"),
            "items": self.items,
            "bucket_of": self.bucket_of,
            "request_sm3": self.request_sm3,
        }
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                os.fchmod(fh.fileno(), 0o600)
                json.dump(doc, fh, ensure_ascii=False)
        except OSError as exc:
            raise PsiError(f"{p}: cannot write the PSI session: {exc}") from exc
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PsiClientSession:
        """Read a session written by :meth:`save`.

        Args:
            path: the session file.

        Returns:
            The :class:`PsiClientSession` (``rejected`` is empty).

        Raises:
            PsiError: unreadable file, not JSON, wrong format/version, or a missing/mistyped key
                (the message names the file and key).
        """
        p = Path(path)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PsiError(f"{p}: cannot read the PSI session: {exc}") from exc
        what = str(p)
        if not isinstance(doc, dict) or doc.get("format") != _SESSION_FORMAT:
            raise PsiError(f"{p}: not a govdx PSI client session")
        if doc.get("version") != PSI_FORMAT_VERSION:
            raise PsiError(f"{p}: unsupported session version {doc.get('version')!r}")
        items = _header_field(doc, "items", list, what)
        bucket_of = _header_field(doc, "bucket_of", list, what)
        buckets = _header_field(doc, "buckets", int, what)
        if len(items) != len(bucket_of) or not all(isinstance(s, str) for s in items):
            raise PsiError(f"{p}: key 'items'/'bucket_of' malformed")
        if not 1 <= buckets <= _MAX_BUCKETS or not all(
            isinstance(b, int) and 0 <= b < buckets for b in bucket_of
        ):
            raise PsiError(f"{p}: key 'bucket_of' holds a bucket outside 0..{buckets - 1}")
        try:
            key = base64.b64decode(_header_field(doc, "key_b64", str, what), validate=True)
        except ValueError as exc:
            raise PsiError(f"{p}: key 'key_b64' is not base64") from exc
        return cls(
            key=key,
            reveal_intersection=_header_field(doc, "reveal_intersection", bool, what),
            element=_header_field(doc, "element", str, what),
            items=items,
            bucket_of=bucket_of,
            buckets=buckets,
            request_sm3=_header_field(doc, "request_sm3", str, what),
        )


# --- server (inside the sandbox) ----------------------------------------------------------------
def check_serve_request(
    request: PsiRequest | bytes,
    *,
    fpr: float,
    allow_reveal: bool,
    max_items: int | None,
    max_buckets: int,
) -> PsiRequest:
    """The server's policy checks of a request, shared by every server engine (processes,
    Spark), before any work starts.

    Returns:
        The parsed :class:`PsiRequest`.

    Raises:
        PsiPolicyError: reveal not allowed, more buckets than ``max_buckets``, more items than
            ``max_items`` (names the cap and the size).
        PsiError: malformed request bytes, ``fpr`` outside (0, 1).
    """
    if not isinstance(request, PsiRequest):
        request = PsiRequest.from_bytes(request)
    if not (isinstance(fpr, (int, float)) and 0.0 < fpr < 1.0):
        raise PsiError(f"fpr must be in (0, 1), got {fpr!r}")
    if request.reveal_intersection and not allow_reveal:
        raise PsiPolicyError(
            "PSI request asks to reveal the intersection items, but this dataset's policy "
            "allows only the intersection size (仅允许返回交集数量, allow_reveal=False)"
        )
    if request.buckets > max_buckets:
        raise PsiPolicyError(
            f"PSI request uses {request.buckets} buckets, over the cap max_buckets={max_buckets} "
            "(分桶数超过上限)",
            limit=max_buckets,
            actual=request.buckets,
        )
    if max_items is not None and request.size > max_items:
        raise PsiPolicyError(
            f"PSI request holds {request.size} items, over the cap max_items={max_items} "
            "(请求集合超过上限)",
            limit=max_items,
            actual=request.size,
        )
    return request


def psi_serve(
    server_items: Iterable[str | None],
    request: PsiRequest | bytes,
    *,
    fpr: float = 1e-9,
    processes: int = 2,
    max_items: int | None = None,
    allow_reveal: bool = False,
    max_buckets: int = 1,
) -> PsiResponse:
    """Answer a PSI request from the dataset's identifiers (runs inside the trust boundary).

    Normalizes ``server_items`` with the request's element (same function as the client),
    buckets them with the public SM3 bucket hash, draws a fresh server key, and per bucket
    builds the GCS filter of ``H(y)^b`` (sized for the bucket's client count at ``fpr / B``)
    and re-blinds the client's points. Per-bucket filters and chunks of re-blinding run in
    ``processes`` worker processes. In cardinality mode the re-blinded points of a bucket are
    sorted (as OpenMined PSI does) so the client cannot link them to its items.

    Args:
        server_items: iterable[m] of the dataset's identifiers (raw; ``None`` allowed).
        request: the client's :class:`PsiRequest` or its bytes.
        fpr: false-positive probability for the whole query, in (0, 1); default 1e-9.
        processes: worker processes (1 = in-process), default 2.
        max_items: cap on the request's item count and on the distinct server items;
            ``None`` = no cap.
        allow_reveal: whether the dataset's policy lets the requester learn the intersection
            items (reveal mode); if ``False`` a reveal request is refused.
        max_buckets: largest bucket count accepted; default 1 forbids bucketing, because in
            cardinality mode the client learns one count *per bucket* and both sides learn the
            per-bucket set sizes (docs/psi.md). Raise it only where the dataset's policy
            accepts that; speed does not need it (chunking already uses every process).

    Returns:
        :class:`PsiResponse` (≈ 35 bytes per client item + the GCS, a few bytes per server item).

    Raises:
        PsiPolicyError: request or server set over ``max_items`` (names cap and size), reveal
            requested but not allowed, more buckets than ``max_buckets``.
        PsiError: malformed request bytes, ``fpr``/``processes`` out of range, library failure.

    Source: OpenMined PSI ``server.CreateSetupMessage`` / ``ProcessRequest``
    (https://github.com/OpenMined/PSI).
    """
    _check_processes(processes)
    request = check_serve_request(
        request, fpr=fpr, allow_reveal=allow_reveal, max_items=max_items, max_buckets=max_buckets
    )
    ns = normalize_identifiers(server_items, element=request.element)
    if max_items is not None and len(ns.items) > max_items:
        raise PsiPolicyError(
            f"PSI server set holds {len(ns.items)} distinct items, over the cap "
            f"max_items={max_items} (数据集集合超过上限)",
            limit=max_items,
            actual=len(ns.items),
        )
    B = request.buckets
    reveal = request.reveal_intersection
    key = _new_key("server", reveal)
    fpr_b = fpr / B
    bucket_of = psi_bucket_of(ns.items, B)
    order = np.argsort(bucket_of, kind="stable")
    bounds = np.searchsorted(bucket_of[order], np.arange(B + 1))
    server_buckets = [
        [ns.items[i] for i in order[bounds[b] : bounds[b + 1]].tolist()] for b in range(B)
    ]

    request_cls = _pb()[0]
    weighted: list[
        tuple[int, tuple[Callable[..., Any], tuple[Any, ...]], tuple[str, int, int]]
    ] = []
    for b, n in enumerate(request.bucket_sizes):
        if n == 0:
            continue
        ys = server_buckets[b]
        weighted.append(
            (_COST_SETUP * max(len(ys), 1), (_w_setup, (key, reveal, fpr_b, n, ys)), ("s", b, 0))
        )
        elements = list(request_cls.FromString(request.frames[b]).encrypted_elements)
        for lo, hi in _chunks(n, request.size, processes):
            part = request_cls(reveal_intersection=reveal)
            part.encrypted_elements.extend(elements[lo:hi])
            weighted.append(
                (
                    _COST_EXP * (hi - lo),
                    (_w_process, (key, reveal, part.SerializeToString())),
                    ("p", b, lo),
                )
            )
    weighted.sort(key=lambda w: -w[0])  # longest first: a greedy LPT schedule on the pool
    results = _run([w[1] for w in weighted], processes)

    _, response_cls, _ = _pb()
    setups = [b""] * B
    chunks: list[list[tuple[int, bytes]]] = [[] for _ in range(B)]
    for res, (_, _, tag) in zip(results, weighted, strict=True):
        kind, b, lo = tag
        if kind == "s":
            setups[b] = res
        else:
            chunks[b].append((lo, res))
    responses = []
    for b in range(B):
        merged = response_cls.FromString(b"".join(r for _, r in sorted(chunks[b])))
        if not reveal:  # one sorted list per bucket, as the library sorts within one call
            out = response_cls()
            out.encrypted_elements.extend(sorted(merged.encrypted_elements))
            merged = out
        responses.append(merged.SerializeToString())
    return PsiResponse(
        reveal_intersection=reveal,
        fpr=float(fpr),
        bucket_sizes=request.bucket_sizes,
        request_sm3=request.sm3(),
        setups=tuple(setups),
        responses=tuple(responses),
    )
