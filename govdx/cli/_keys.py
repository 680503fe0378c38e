"""``govdx keys`` and ``govdx catalog publish``: key rotation, coverage, publication gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from govdx import GovdxError
from govdx.cli._common import (
    catalog_session,
    console,
    err_console,
    fail,
    get_settings,
    print_json,
)

keys_app = typer.Typer(
    help="Keys (密钥): rotate the master key (KEK) or a dataset's data key (DEK); coverage.",
    no_args_is_help=True,
)


def _auditor(settings):
    import catalog
    from sandbox import Auditor

    with catalog_session(settings):  # migrates the catalog DB on first use
        pass
    return Auditor(catalog.open_catalog(settings.catalog_db_url), settings.keys_dir)


@keys_app.command("rotate")
def rotate(
    kek: Annotated[
        bool, typer.Option("--kek", help="Rotate the master key: re-wrap every DEK.")
    ] = False,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Re-encrypt this dataset under a new DEK.")
    ] = None,
    user: Annotated[
        str | None, typer.Option(envvar="GOVDX_USER", help="Acting admin (checked, audited).")
    ] = None,
    old_kek: Annotated[
        list[Path] | None,
        typer.Option(
            "--old-kek",
            help="With --kek: a retired KEK restored from backup (32 hex chars, mode 0600) to "
            "repair keys still wrapped under it; repeatable.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Rotate keys (密钥轮换). Exactly one of --kek or --dataset CODE.

    --kek re-wraps every data key under a fresh master key without touching data (back up the
    new keys/kek.key afterwards); it holds the keys lock throughout, so rotations and ingestions
    running at the same time wait for it. --dataset CODE writes a new table version whose
    protected columns are encrypted under a new data key; older versions stay readable; it
    waits for ingestions and other rotations of this home. A dataset without encrypted columns
    has nothing to rotate (no version, no key is written).

    Examples: govdx keys rotate --kek ; govdx keys rotate --dataset SCJG-0001 ;
    govdx keys rotate --kek --old-kek /backup/kek-2026-10.key
    """
    if kek == (dataset is not None):
        fail("give exactly one of --kek or --dataset CODE")
    if old_kek and not kek:
        fail("--old-kek repairs keys during a master-key rotation: use it with --kek")
    settings = get_settings()
    try:
        acting_user(settings, user, roles=("admin",))
        auditor = _auditor(settings)
        if kek:
            from pipelines._keyops import rotate_kek
            from privacy import LocalKms

            retired = [LocalKms.from_file(p) for p in old_kek or []]
            out = rotate_kek(settings, audit=auditor.callback(user, "kek"), retired=retired)
        else:
            out = _rotate_dataset(settings, dataset, auditor=auditor, user=user)
    except GovdxError as exc:
        fail(exc)
        return
    if as_json:
        print_json(out)
    elif kek:
        console.print(
            f"master key rotated: {out['rewrapped']} data key(s) re-wrapped, "
            f"{out['old_kek_id']} → {out['new_kek_id']}; back up keys/kek.key now"
        )
    elif not out["rotated"]:
        console.print(f"{out['dataset']}: {out['reason']}")
    else:
        console.print(
            f"{out['dataset']}: version {out['version']} re-encrypted under data key "
            f"{out['key_id']} (from version {out['from_version']})"
        )


def _rotate_dataset(settings, code: str, *, auditor, user: str) -> dict:
    """Re-encrypt ``code``'s current version under a new DEK, holding the home's ``ingest`` lock
    from reading the catalog's current version to registering the new one (no other ingestion
    or rotation of the dataset can slip a version in between and be overwritten)."""
    from govdx._locks import home_lock

    settings.ensure_home()
    with home_lock(settings.home, "ingest", on_wait=_waiting):
        return _rotate_dataset_locked(settings, code, auditor=auditor, user=user)


def _waiting() -> None:
    err_console.print(
        "waiting for another ingestion or key rotation of this home to finish (等待其他任务完成)…"
    )


def _rotate_dataset_locked(settings, code: str, *, auditor, user: str) -> dict:
    import catalog
    from pipelines._ingest import emit_lineage
    from pipelines._keyops import contract_of, rotate_dataset_key

    run_id = catalog.new_run_id()
    with catalog_session(settings) as s:
        ds = catalog.get_dataset(session=s, code=code)
        contract = contract_of(ds)
        cur = catalog.current_version(session=s, code=code)
        if cur is None:
            raise catalog.CatalogError(f"{code} has no version to re-encrypt")
        digest, source_name, source_bytes = cur.source_digest, cur.source_name, cur.source_bytes
        quarantined, base = cur.quarantined_count, cur.delta_version
    result, key_id = rotate_dataset_key(
        contract,
        settings=settings,
        version=base,
        run_id=run_id,
        digest=digest,
        audit=auditor.callback(user, f"dataset:{code}"),
    )
    if result is None:
        return {
            "dataset": code,
            "rotated": False,
            "from_version": base,
            "version": base,
            "key_id": None,
            "reason": (
                f"nothing to rotate (无需轮换): version {base} holds no encrypted column "
                f"({len(contract.protected_fields)} protected fields); no new version or data "
                "key written"
            ),
        }
    with catalog_session(settings) as s:
        ds = catalog.get_dataset(session=s, code=code)
        catalog.add_version(
            session=s,
            dataset=ds,
            delta_version=result.version,
            row_count=result.rows,
            quarantined_count=quarantined,
            source_digest=digest,
            source_name=source_name,
            source_bytes=source_bytes,
            run_id=run_id,
            engine="key-rotation",
        )
        emit_lineage(
            settings,
            contract,
            event_type="COMPLETE",
            run_id=run_id,
            source_name=source_name,
            digest=digest,
            session=s,
        )
    auditor.record(
        user,
        "dataset.reencrypt",
        f"dataset:{code}",
        {"from_version": base, "to_version": result.version, "key_id": key_id},
    )
    return {
        "dataset": code,
        "rotated": True,
        "from_version": base,
        "version": result.version,
        "key_id": key_id,
    }


@keys_app.command("coverage")
def coverage(
    code: Annotated[str | None, typer.Argument(help="One dataset (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Encryption coverage (敏感数据加密覆盖率): protected fields stored encrypted, per dataset."""
    rows = coverage_rows(get_settings(), code)
    if as_json:
        print_json(rows)
        return
    t = Table("code", "version", "protected", "encrypted", "coverage", "plaintext (must be none)")
    t.columns[4].no_wrap = True
    for r in rows:
        t.add_row(
            r["code"],
            str(r["version"]),
            str(len(r["protected"])),
            str(len(r["encrypted"])),
            coverage_text(r),
            ", ".join(r["missing"]),
        )
    console.print(t)


def acting_user(
    settings, name: str | None, *, roles: tuple[str, ...], department: str | None = None
):
    """The registered user acting on this command, checked against ``roles`` (and, for a
    steward, the owning ``department``).

    Raises:
        sandbox.UserError / sandbox.PermissionDenied: no --user, an unknown user or a wrong role.
    """
    from sandbox import PermissionDenied, Sandbox

    box = Sandbox(settings)
    try:
        u = box.get_user(name)
    finally:
        box.close()
    if u.role not in roles:
        raise PermissionDenied(f"{u.name!r} is a {u.role}; this needs one of {list(roles)}")
    if u.role == "steward" and department is not None and u.department_code != department:
        raise PermissionDenied(
            f"{u.name!r} is a steward of {u.department_code}, not of {department} (非本部门数据)"
        )
    return u


def coverage_text(row: dict) -> str:
    """A coverage row's rate as the security-coverage report writes it (``reports.Ratio``):
    ``'100.0% (2 of 2)'``; ``'— (0 of 0)'`` without protected fields; no version: said so."""
    from reports import Ratio

    if row["version"] is None:
        return "— (no stored version)"
    return str(Ratio(len(row["encrypted"]), len(row["protected"])))


def coverage_rows(settings, code: str | None = None) -> list[dict]:
    """Coverage of every (or one) catalog entry's current version.

    Returns:
        one dict per entry: ``code``, ``version`` (int or None), ``protected``, ``encrypted``,
        ``missing`` (lists of field names) and ``ratio`` (encrypted ÷ protected, None for 0 of 0).
    """
    import catalog
    from pipelines import Lakehouse
    from pipelines._keyops import contract_of, encryption_coverage

    lake = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
    out = []
    try:
        with catalog_session(settings) as s:
            entries = (
                [catalog.get_dataset(session=s, code=code)]
                if code
                else catalog.list_datasets(session=s)
            )
            for ds in entries:
                v = catalog.current_version(session=s, code=ds.code)
                cov = encryption_coverage(
                    contract_of(ds), lakehouse=lake, version=v.delta_version if v else None
                )
                out.append(cov.to_dict())
    except GovdxError as exc:
        fail(exc)
    return out


def publish_command(
    code: Annotated[str, typer.Argument(help="Dataset code (信息资源代码).")],
    withdraw: Annotated[bool, typer.Option("--withdraw", help="Withdraw instead (撤回).")] = False,
    user: Annotated[
        str | None,
        typer.Option(
            envvar="GOVDX_USER", help="Acting steward of the owning department, or admin."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Publish a catalog entry (发布目录) — refused unless every protected field is encrypted.

    Example: govdx catalog publish SCJG-0001
    """
    import catalog

    settings = get_settings()
    try:
        with catalog_session(settings) as s:
            owner = catalog.get_dataset(session=s, code=code).department_code
        acting_user(settings, user, roles=("steward", "admin"), department=owner)
    except GovdxError as exc:
        fail(exc)
        return
    if not withdraw:
        from pipelines import Lakehouse
        from pipelines._keyops import publication_refusal

        try:
            with catalog_session(settings) as s:
                refusal = publication_refusal(
                    s, code, lakehouse=Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
                )
        except GovdxError as exc:
            fail(exc)
            return
        if refusal:
            fail(refusal)
    try:
        with catalog_session(settings) as s:
            ds = catalog.set_published(session=s, code=code, published=not withdraw)
            out = {
                "code": code,
                "published": ds.published,
                "published_at": ds.published_at.isoformat() if ds.published_at else None,
            }
        _auditor(settings).record(
            user, "catalog.withdraw" if withdraw else "catalog.publish", f"dataset:{code}", {}
        )
    except GovdxError as exc:
        fail(exc)
        return
    if as_json:
        print_json(out)
    else:
        console.print(f"{code}: {'withdrawn' if withdraw else 'published'}")
