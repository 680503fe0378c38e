"""``/api/v1/catalog``: search and show entries (everyone signed in); publish, unpublish, edit,
upload contracts and read rows (the owning department's steward only).

Unpublished entries are visible only to their department's stewards and to admins; to anyone
else they do not exist (404). Row-level data leaves only through ``GET .../rows``, only to a
steward of the owning department, audited, with protected columns as ``"[encrypted]"``.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, UploadFile, status

from api import crud
from api.deps import AnyUser, Principal, SessionDep, StateDep, require_role
from api.schemas import (
    ContractRegistered,
    DatasetPublic,
    DatasetSearchQuery,
    DatasetsPublic,
    DatasetUpdate,
    RowsPublic,
    RowsQuery,
)
from govdx import ContractError

router = APIRouter(prefix="/api/v1/catalog", tags=["catalog"])

Code = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Steward = Annotated[Principal, require_role("steward")]


def _visible_entry(state: StateDep, code: str, user: Principal) -> crud.Entry:
    entry = state.index.get(code)
    if not crud.visible(entry, user):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"catalog entry {code!r} not found")
    return entry


def _owned_entry(state: StateDep, code: str, user: Principal) -> crud.Entry:
    state.index.invalidate()  # writes and row reads act on the newest catalog
    entry = state.index.get(code)
    if not crud.visible(entry, user):  # another department's unpublished entry: as if absent
        state.sandbox.audit.record(
            user.name, "catalog.refuse", code, {"reason": "not the owning department"}
        )
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"catalog entry {code!r} not found")
    if user.department != entry.department:
        state.sandbox.audit.record(
            user.name, "catalog.refuse", code, {"reason": "not the owning department"}
        )
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"catalog entry {code!r} belongs to department {entry.department!r}; "
            f"{user.name!r} is a steward of {user.department!r} (非本部门目录)",
        )
    return entry


def _scope(user: Principal) -> tuple[str, str | None]:
    """Users who see the same entries share cached bodies: admins (all), each department's
    stewards (published + their own), everyone else (published)."""
    if user.role == "admin":
        return ("admin", None)
    if user.role == "steward":
        return ("steward", user.department)
    return ("published", None)


@router.get("/datasets", response_model=DatasetsPublic, summary="Search the catalog (目录检索)")
async def search_datasets(
    user: AnyUser, query: Annotated[DatasetSearchQuery, Query()], state: StateDep
) -> Response:
    """Entries matching every filter, ordered by code (``count`` in all, ``data`` this page)."""
    entries = state.index.entries()

    def build() -> bytes:
        visible = [e for e in entries if crud.visible(e, user)]
        found = crud.search_entries(
            visible,
            crud.SearchFilters(
                q=query.q,
                department=query.department,
                grade=query.grade,
                share_type=query.share_type,
                open_type=query.open_type,
                element=query.element,
                published=query.published,
            ),
        )
        page = found[query.offset : query.offset + query.limit]
        return _json({"count": len(found), "data": [e.summary for e in page]})

    body = state.index.rendered(("search", _scope(user), query.model_dump_json()), build)
    return Response(body, media_type="application/json")


@router.get("/datasets/{code}", response_model=DatasetPublic, summary="Show an entry (目录详情)")
async def show_dataset(code: Code, user: AnyUser, state: StateDep) -> Response:
    """The entry with its fields and grades, versions, quality report and lineage."""
    _visible_entry(state, code, user)
    body = state.index.rendered(("show", code), lambda: _json(state.index.detail(code)))
    return Response(body, media_type="application/json")


def _json(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@router.patch("/datasets/{code}", response_model=DatasetPublic, summary="Edit an entry (编辑目录)")
def edit_dataset(
    code: Code, body: DatasetUpdate, user: Steward, state: StateDep, session: SessionDep
) -> DatasetPublic:
    """Change title, summary, share/open type and conditions, update cycle or tags of an entry
    of the steward's own department (the registered contract is updated and re-registered)."""
    _owned_entry(state, code, user)
    crud.edit_entry(
        session=session,
        code=code,
        changes=body.model_dump(exclude_none=True),
        settings=state.settings,
    )
    session.commit()
    state.index.invalidate()
    state.sandbox.audit.record(
        user.name, "catalog.edit", code, {"keys": sorted(body.model_dump(exclude_none=True))}
    )
    return DatasetPublic(**state.index.detail(code))


def _publish(code: str, user: Principal, state: StateDep, session: SessionDep, on: bool) -> dict:
    _owned_entry(state, code, user)
    import catalog

    if on:  # the rule of `govdx catalog publish`: a stored version at 100 % encryption coverage
        from pipelines import Lakehouse
        from pipelines._keyops import publication_refusal

        settings = state.settings
        refusal = publication_refusal(
            session, code, lakehouse=Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
        )
        if refusal:
            state.sandbox.audit.record(
                user.name, "catalog.publish.refuse", code, {"reason": refusal}
            )
            raise HTTPException(status.HTTP_409_CONFLICT, refusal)

    catalog.set_published(session=session, code=code, published=on)
    session.commit()
    state.index.invalidate()
    state.sandbox.audit.record(user.name, "catalog.publish" if on else "catalog.unpublish", code)
    return state.index.get(code).summary


@router.post("/datasets/{code}/publish", summary="Publish an entry (发布)")
def publish_dataset(code: Code, user: Steward, state: StateDep, session: SessionDep) -> dict:
    """Publish an entry of the steward's own department; returns the entry. Refused (409) unless
    its stored version holds every protected field encrypted (100 % coverage, 加密覆盖率)."""
    return _publish(code, user, state, session, True)


@router.post("/datasets/{code}/unpublish", summary="Withdraw an entry (撤回发布)")
def unpublish_dataset(code: Code, user: Steward, state: StateDep, session: SessionDep) -> dict:
    """Withdraw an entry of the steward's own department; returns the entry."""
    return _publish(code, user, state, session, False)


@router.put(
    "/contracts",
    response_model=ContractRegistered,
    summary="Upload a dataset contract (登记数据集契约)",
)
def upload_contract(
    contract: UploadFile, user: Steward, state: StateDep, session: SessionDep
) -> ContractRegistered:
    """Register (or update) the catalog entry of a contract of the steward's own department; the
    contract is kept in the home's ``contracts/`` for scheduled ingestion. At most
    ``GOVDX_MAX_CONTRACT_BYTES`` bytes of UTF-8 YAML."""
    limit = state.settings.max_contract_bytes
    data = contract.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"contract: over the limit of {limit} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "loc": ["body", "contract"],
                    "msg": f"not UTF-8 ({exc.reason})",
                    "type": "value_error",
                }
            ],
        ) from exc
    try:
        ds, created = crud.register_contract(
            session=session, settings=state.settings, text=text, department=user.department or ""
        )
    except (crud.ApiError, ContractError) as exc:  # refused uploads are audited too
        session.rollback()
        state.sandbox.audit.record(
            user.name, "catalog.refuse", "contract-upload", {"reason": str(exc)[:500]}
        )
        raise
    code = ds.code
    details: dict = {"created": created}
    if ds.published:  # a regrading the stored version does not meet yet: withdraw until ingest
        import catalog
        from pipelines import Lakehouse
        from pipelines._keyops import publication_refusal

        settings = state.settings
        session.flush()
        refusal = publication_refusal(
            session, code, lakehouse=Lakehouse(settings.lakehouse_dir, settings.quarantine_dir)
        )
        if refusal:
            catalog.set_published(session=session, code=code, published=False)
            details["unpublished"] = refusal
    session.commit()
    state.index.invalidate()
    state.sandbox.audit.record(user.name, "catalog.contract", code, details)
    return ContractRegistered(
        code=code,
        created=created,
        entry=state.index.get(code).summary,
        unpublished=details.get("unpublished"),
    )


@router.get(
    "/datasets/{code}/rows",
    response_model=RowsPublic,
    summary="Rows of an own dataset (本部门数据, audited)",
)
def dataset_rows(
    code: Code,
    query: Annotated[RowsQuery, Query()],
    user: Steward,
    state: StateDep,
    session: SessionDep,
) -> RowsPublic:
    """A page of the stored table, for a steward of the owning department only; every read is
    audited (``dataset.rows.read``). Protected (SM4-encrypted) columns are not decrypted: each
    of their values is the string ``"[encrypted]"`` (null stays null)."""
    _owned_entry(state, code, user)
    limit = min(query.limit, state.settings.max_rows_per_page)
    page = crud.read_rows(
        session=session, settings=state.settings, code=code, offset=query.offset, limit=limit
    )
    state.sandbox.audit.record(
        user.name,
        "dataset.rows.read",
        code,
        {"version": page["version"], "offset": query.offset, "rows": len(page["rows"])},
    )
    return RowsPublic(**page)
