"""The key stock for psi_sum joins (密钥储备): single-use department key packs made ahead of jobs.

A ``psi_sum`` join encrypts one value per distinct identifier of the dataset under a *fresh*
department Paillier key (docs/he.md), so nothing can be precomputed inside the job: each value
costs a CRT exponentiation (≈ 440/s per core at 2048 bits). The stock moves that work out of
the job: an operator makes :class:`privacy._paillier.KeyPack` files ahead (nightly, or after each
table version) — a fresh key plus one owner obfuscator per identifier — and the join claims one
and encrypts with one modular multiplication per value.

Layout (under the sandbox's folder, ``Sandbox.root`` = ``<GOVDX_HOME>/sandbox``)::

    sandbox/stock/                          0700
        paillier/<dataset code>/            0700
            <created>-<bits>-<count>-<id>.pack      0600, one key pack (written atomically)
        used/                               0700
            <pack id>                       0600, one marker per pack ever claimed

``stock`` can never be a job id (ids are 22 URL-safe characters; a reveal's ``join_job`` must
match 8–64). **Single use**: a join claims a pack by ``rename(2)`` into its own state folder
(``<job>/state/he_pack.pack``) — atomic on one file system, so of two concurrent claimers of the
same pack exactly one succeeds and the other moves on to another pack or to the fresh path; the
claimed file is deleted once the join has encrypted (or failed). A pack is never reused: a key or
obfuscator shared by two joins would let requesters link rows or difference plaintexts. Because a
file can come back (restored from a backup, copied by hand), each claim also creates the marker
``stock/used/<pack id>`` with ``O_CREAT | O_EXCL`` (0600, fsynced) after checking the pack's header
names that id; a pack whose marker exists is destroyed unused and audited
(``he_stock.reuse_refused``). Markers are never deleted (a few bytes per pack).

Roles: a steward of the dataset's owning department or an admin makes and lists packs; each
pack made (and each refusal) is an audit entry (``he_stock.make``, ``he_stock.refuse``); the
claim is an audit entry ``he_stock.claim`` by the worker, and is recorded in the join's job
summary (``key_source``, ``stock_pack``). :meth:`HeStock.list` shows only packs a join could
claim: not one whose header names another dataset or pack id than its folder and file name, not
one already claimed.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sandbox._errors import PermissionDenied, Refused, SandboxError

__all__ = [
    "CLAIM_FILE",
    "ClaimedPack",
    "HeStock",
    "PackInfo",
    "distinct_identifiers",
    "list_stock",
    "make_stock",
]

STOCK_DIR = "stock"
SCHEME_DIR = "paillier"
#: ``stock/used/<pack id>``: a marker per claimed pack (never reused, even if the file returns)
USED_DIR = "used"
PACK_SUFFIX = ".pack"
#: the claimed pack's name inside ``<job>/state/``
CLAIM_FILE = "he_pack.pack"
_NAME = re.compile(r"^(\d{8}T\d{6}Z)-(\d{4})-(\d{1,9})-([A-Za-z0-9_-]{8,32})\.pack$")
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class PackInfo:
    """One pack in the stock (from its file name; the key is not read).

    Attributes:
        dataset: dataset code. pack_id: the file stem. bits: modulus bits.
        count: obfuscators (values it can encrypt). created: UTC creation time (ISO 8601).
        path: the pack file. bytes: its size.
    """

    dataset: str
    pack_id: str
    bits: int
    count: int
    created: str
    path: Path
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (path as a string)."""
        return {
            "dataset": self.dataset,
            "pack_id": self.pack_id,
            "bits": self.bits,
            "count": self.count,
            "created": self.created,
            "bytes": self.bytes,
        }


@dataclass
class ClaimedPack:
    """A pack this caller claimed (renamed into its own folder): use it once, then :meth:`burn`.

    Attributes:
        info: the pack's :class:`PackInfo` (``path`` = where it was in the stock).
        pack: the loaded :class:`privacy._paillier.KeyPack`.
        path: where the claimed file is now.
    """

    info: PackInfo
    pack: Any
    path: Path

    def burn(self) -> None:
        """Delete the claimed file (its obfuscators are spent; the key lives on in the job)."""
        self.path.unlink(missing_ok=True)


class HeStock:
    """The key stock of one sandbox folder (see the module docstring).

    Args:
        sandbox_root: ``Sandbox.root`` (``<GOVDX_HOME>/sandbox``).
        audit: optional callback ``(event, details)`` called for each pack made
            (``he_stock.make``), as :class:`privacy.Keyring` does for key events.
    """

    def __init__(
        self, sandbox_root: Path, *, audit: Callable[[str, dict[str, Any]], None] | None = None
    ) -> None:
        self.root = Path(sandbox_root) / STOCK_DIR / SCHEME_DIR
        self.used_dir = Path(sandbox_root) / STOCK_DIR / USED_DIR
        self._audit = audit

    def was_claimed(self, pack_id: str) -> bool:
        """Whether a pack of this id was ever claimed (its ``used/`` marker exists)."""
        return (self.used_dir / pack_id).exists()

    def _mark_claimed(self, pack_id: str, details: dict[str, Any]) -> bool:
        """Create ``used/<pack_id>`` (O_CREAT | O_EXCL, 0600, fsynced; folder 0700).

        Returns:
            False when the marker already exists (the pack was claimed before).

        Raises:
            SandboxError: the marker cannot be written (the pack is then not used).
        """
        import json

        try:
            self.used_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.used_dir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.used_dir, 0o700)
            fd = os.open(self.used_dir / pack_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        except OSError as exc:
            raise SandboxError(
                f"{self.used_dir}: cannot record the claim of {pack_id}: {exc}"
            ) from exc
        try:
            os.write(fd, json.dumps(details, sort_keys=True).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def dataset_dir(self, code: str, *, create: bool = False) -> Path:
        """``stock/paillier/<code>`` (made 0700, with its parents, when ``create``).

        Raises:
            Refused: a code that is not a catalog code (no path tricks).
        """
        if not _CODE.match(code):
            raise Refused(f"dataset code {code!r} is not a catalog code")
        d = self.root / code
        if create:
            self.root.parent.parent.mkdir(parents=True, exist_ok=True)
            for p in (self.root.parent, self.root, d):
                p.mkdir(mode=0o700, exist_ok=True)
                os.chmod(p, 0o700)
        return d

    def make(
        self,
        code: str,
        *,
        size: int,
        bits: int = 2048,
        packs: int = 1,
        processes: int = 2,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> list[PackInfo]:
        """Make ``packs`` key packs of ``size`` obfuscators for dataset ``code``.

        Args:
            code: dataset code. size: obfuscators per pack (values a join may encrypt).
            bits: modulus bits (2048 or 3072: the join's ``key_bits``).
            packs: how many packs. processes: worker processes (2: both cores).
            progress: optional ``(pack index, done, size)`` callback.

        Returns:
            list[packs] of :class:`PackInfo`.

        Raises:
            Refused: bad code, size < 1, packs < 1. privacy.HeError: key or file failure.
        """
        from privacy._paillier import KeyPack

        if size < 1 or packs < 1:
            raise Refused(f"he-stock: size {size} and packs {packs} must be ≥ 1")
        d = self.dataset_dir(code, create=True)
        out = []
        for i in range(packs):
            created = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            pack_id = f"{created}-{bits}-{size}-{secrets.token_urlsafe(9)}"
            cb = None if progress is None else (lambda done, total, i=i: progress(i, done, total))
            pack = KeyPack.make(
                bits,
                size,
                processes=processes,
                progress=cb,
                meta={"dataset": code, "pack_id": pack_id, "created": created},
            )
            path = pack.save(d / f"{pack_id}{PACK_SUFFIX}")
            info = _info(code, path)
            assert info is not None
            out.append(info)
            if self._audit is not None:
                self._audit(
                    "he_stock.make",
                    {
                        "dataset": code,
                        "pack_id": pack_id,
                        "bits": bits,
                        "count": size,
                        "fingerprint": pack.public.fingerprint,
                    },
                )
        return out

    def list(self, code: str | None = None, *, verify: bool = True) -> list[PackInfo]:
        """Packs in the stock (of ``code``, or all), by dataset then creation time.

        Args:
            code: one dataset, or None for all.
            verify: read each pack's header line (not its obfuscators) and leave out a pack
                whose header names another dataset or pack id than its folder and file name,
                an unreadable one, and one already claimed (``used/`` marker). False: file
                names only (what :meth:`claim` walks; it checks each pack it takes).
        """
        out = self._named(code)
        return [i for i in out if self._claimable(i)] if verify else out

    def _claimable(self, info: PackInfo) -> bool:
        from privacy._paillier import HeError, KeyPack

        if self.was_claimed(info.pack_id):
            return False
        try:
            meta = KeyPack.read_meta(info.path)["meta"]
        except HeError:
            return False
        return meta.get("dataset") == info.dataset and meta.get("pack_id") == info.pack_id

    def _named(self, code: str | None) -> list[PackInfo]:
        if not self.root.is_dir():
            return []
        codes = (
            [code]
            if code is not None
            else sorted(p.name for p in self.root.iterdir() if _CODE.match(p.name))
        )
        out: list[PackInfo] = []
        for c in codes:
            d = self.dataset_dir(c)
            if d.is_dir():
                out += sorted(
                    (i for p in d.iterdir() if (i := _info(c, p)) is not None),
                    key=lambda i: (i.created, i.pack_id),
                )
        return out

    def claim(self, code: str, *, bits: int, need: int, dest_dir: Path) -> ClaimedPack | None:
        """Claim one pack of dataset ``code`` with ``bits``-bit key for a join of ``need`` values.

        Prefers the smallest pack with ``count ≥ need`` (oldest first); else the largest
        smaller one (the join makes fresh obfuscators for the rest). The pack is renamed into
        ``dest_dir/he_pack.pack`` — atomic, so a pack another claimer took is skipped — then
        loaded and checked (its header names ``code`` and ``bits``; two obfuscators are spot
        checked; its header's pack id must be its file name's). A claimed pack that fails the
        check is deleted and the next one tried. Then the claim is recorded durably
        (``used/<pack id>``, O_EXCL): a pack claimed before — a copy put back — is deleted
        unused, audited ``he_stock.reuse_refused``, and the next one tried.

        Returns:
            The :class:`ClaimedPack`, or None when the stock holds no usable pack.

        Raises:
            SandboxError: ``dest_dir/he_pack.pack`` already exists (a pack is never reused).
        """
        from privacy._paillier import HeError, KeyPack

        dest = Path(dest_dir) / CLAIM_FILE
        if dest.exists():
            raise SandboxError(f"{dest}: a claimed key pack is already there (never reused)")
        packs = [i for i in self.list(code, verify=False) if i.bits == bits]
        cover = sorted((i for i in packs if i.count >= need), key=lambda i: (i.count, i.created))
        rest = sorted((i for i in packs if i.count < need), key=lambda i: (-i.count, i.created))
        for info in cover + rest:
            try:
                os.rename(info.path, dest)
            except FileNotFoundError:  # another job claimed it first
                continue
            try:
                pack = KeyPack.load(dest)
                meta = pack.meta
                if meta.get("dataset") != code or pack.public.bits != bits:
                    raise HeError(f"pack {info.pack_id} is for {meta.get('dataset')!r}")
                if len(pack.pool) != info.count:
                    raise HeError(f"pack {info.pack_id} holds {len(pack.pool)} obfuscators")
                if meta.get("pack_id") != info.pack_id:
                    raise HeError(f"pack {info.pack_id} is named {meta.get('pack_id')!r} inside")
            except HeError:
                dest.unlink(missing_ok=True)  # claimed, unusable: destroyed, never put back
                continue
            fingerprint = pack.public.fingerprint
            facts = {"dataset": code, "pack": info.pack_id, "fingerprint": fingerprint}
            try:
                fresh = self._mark_claimed(
                    info.pack_id, {**facts, "claimed": datetime.now(UTC).isoformat()}
                )
            except SandboxError:
                dest.unlink(missing_ok=True)
                raise
            if not fresh:  # a copy of a pack claimed before: its key is in another join
                dest.unlink(missing_ok=True)
                if self._audit is not None:
                    self._audit(
                        "he_stock.reuse_refused",
                        {**facts, "reason": "pack claimed before (已使用的密钥包, 已销毁)"},
                    )
                continue
            if self._audit is not None:
                self._audit(
                    "he_stock.claim",
                    {
                        "dataset": code,
                        "pack": info.pack_id,
                        "bits": bits,
                        "count": info.count,
                        "need": need,
                    },
                )
            return ClaimedPack(info, pack, dest)
        return None


def _info(code: str, path: Path) -> PackInfo | None:
    m = _NAME.match(path.name)
    if m is None:
        return None
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    created = datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat()
    return PackInfo(
        dataset=code,
        pack_id=path.name.removesuffix(PACK_SUFFIX),
        bits=int(m.group(2)),
        count=int(m.group(3)),
        created=created,
        path=path,
        bytes=size,
    )


# --- service-level operations (role checks, audit) ----------------------------------------------
def _may_stock(u: Any, contract: Any) -> bool:
    return u.role == "admin" or (
        u.role == "steward" and u.department_code == contract.department.code
    )


def _stock_contract(box: Any, user: str | None, code: str, action: str) -> tuple[Any, Any, Any]:
    """``(user, dataset row, contract)`` after the role check (refusals audited)."""
    import catalog

    u = box.get_user(user)
    subject = f"dataset:{code}"
    try:
        with box.factory() as s:
            try:
                ds, contract = box._contract(s, code)
            except catalog.DatasetNotFound as exc:
                raise Refused(str(exc)) from exc
        if not _may_stock(u, contract):
            raise PermissionDenied(
                f"{u.name!r} ({u.role}) may not {action} the key stock of {code}: only a steward "
                f"of {contract.department.code} or an admin may (无权管理密钥储备)"
            )
    except Refused as exc:
        raise box._refuse(u.name, subject, exc, "he_stock.refuse") from None
    return u, ds, contract


def distinct_identifiers(settings: Any, contract: Any, dataset_name: str) -> int:
    """Distinct identifiers of the contract's ``privacy_unit`` in the current table version —
    the number of values a psi_sum join encrypts (an upper bound: rows without a value or with
    an invalid identifier are not encrypted).

    Reads the plaintext column when it is not protected (canonicalized as the join does), the
    ``<unit>_token`` column (HMAC-SM3 tokens) when it is; never decrypts. Without either, the
    non-null row count.

    Raises:
        Refused: the contract has no privacy_unit.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipelines._lakehouse import Lakehouse

    unit = contract.privacy_unit
    if unit is None:
        raise Refused(f"dataset {contract.code} declares no privacy_unit: psi_sum cannot run on it")
    table = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir).read(dataset_name)
    f = contract.field(unit)
    token = f"{unit}_token"
    if not f.protected and unit in table.column_names:
        from privacy._psi import PSI_ELEMENTS
        from sandbox._he import _canonical

        col = table[unit]
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        element = f.element if f.element in PSI_ELEMENTS else "identifier"
        return int(pc.count_distinct(_canonical(col, element), mode="only_valid").as_py())
    if token in table.column_names:
        return int(pc.count_distinct(table[token], mode="only_valid").as_py())
    return int(table.num_rows - table[unit].null_count) if unit in table.column_names else 0


def make_stock(
    box: Any,
    *,
    user: str | None,
    dataset: str,
    packs: int = 1,
    size: int | None = None,
    bits: int = 2048,
    processes: int = 2,
    progress: Callable[[int, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Make key packs for ``dataset`` (steward of its department or admin; audited).

    Args:
        box: the :class:`sandbox.Sandbox`.
        user: the acting user.
        dataset: dataset code.
        packs: how many packs.
        size: obfuscators per pack; default: :func:`distinct_identifiers` of the current version.
        bits: modulus bits (2048 or 3072).
        processes: worker processes.
        progress: optional ``(pack index, done, size)`` callback.

    Returns:
        list[packs] of :meth:`PackInfo.to_dict`.

    Raises:
        UserError, PermissionDenied, Refused (unknown dataset, psi_sum not allowed on it, no
        privacy_unit, bad size/bits): audited. privacy.HeError: key generation or file failure.
    """
    from govdx._errors import GovdxError
    from sandbox._policy import sandbox_policy

    u, ds, contract = _stock_contract(box, user, dataset, "fill")
    try:
        if "psi_sum" not in sandbox_policy(contract).allowed_computations:
            raise Refused(
                f"dataset {dataset} does not allow psi_sum (sandbox.allowed_computations): "
                "no join could use a key pack (不允许隐私求交求和, 无需预制密钥)"
            )
        if bits not in (2048, 3072):
            raise Refused(f"--bits {bits}: psi_sum keys are 2048 or 3072 bits")
        if size is None:
            try:
                size = distinct_identifiers(box.settings, contract, ds.name)
            except Refused:
                raise
            except GovdxError as exc:
                raise Refused(f"dataset {dataset}: cannot read the current version: {exc}") from exc
            if size < 1:
                raise Refused(f"dataset {dataset} has no identifiers to size a pack for; --size")
    except Refused as exc:
        raise box._refuse(u.name, f"dataset:{dataset}", exc, "he_stock.refuse") from None
    stock = HeStock(box.root, audit=box.audit.callback(u.name, f"dataset:{dataset}"))
    return [
        i.to_dict()
        for i in stock.make(
            dataset, size=size, bits=bits, packs=packs, processes=processes, progress=progress
        )
    ]


def list_stock(box: Any, *, user: str | None, dataset: str | None = None) -> list[dict[str, Any]]:
    """Packs in the stock: of ``dataset``, or of every dataset the user may manage (an admin:
    all; a steward: its department's).

    Raises:
        UserError, PermissionDenied, Refused (unknown dataset): audited.
    """
    import catalog

    stock = HeStock(box.root)
    if dataset is not None:
        _stock_contract(box, user, dataset, "list")
        return [i.to_dict() for i in stock.list(dataset)]
    u = box.get_user(user)
    if u.role not in ("admin", "steward"):
        raise box._refuse(
            u.name,
            "he_stock",
            PermissionDenied(
                f"{u.name!r} ({u.role}) may not list the key stock: stewards and admins only"
            ),
            "he_stock.refuse",
        )
    out = []
    with box.factory() as s:
        for info in stock.list():
            if u.role != "admin":
                try:
                    _, contract = box._contract(s, info.dataset)
                except catalog.DatasetNotFound:
                    continue
                if not _may_stock(u, contract):
                    continue
            out.append(info.to_dict())
    return out
