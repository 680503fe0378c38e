"""Open-data views of the catalog (开放数据): CKAN package/organization dicts and DCAT-AP 3.

Only *open* entries appear here: published, with open type ``unconditional`` (无条件开放) or
``conditional`` (有条件开放; the entry is listed with ``dct:accessRights`` RESTRICTED and its
conditions, its data still needs an application). Entries with open type ``none`` (不予开放)
and unpublished entries never appear. These views carry metadata only; no row of any dataset.

Sources: CKAN API guide (https://docs.ckan.org/en/2.11/api/) for the action envelope and the
package/organization dictionaries; DCAT-AP 3.0 (https://semiceu.github.io/DCAT-AP/releases/3.0.0/)
and W3C DCAT 3 (https://www.w3.org/TR/vocab-dcat-3/) for the JSON-LD export; EU controlled
vocabularies for frequency and access rights (publications.europa.eu/resource/authority).
"""

from __future__ import annotations

import shlex
import uuid
from datetime import UTC, datetime
from typing import Any

from api.crud import Entry

OPEN_TYPES = frozenset({"unconditional", "conditional"})
_NS = uuid.uuid5(uuid.NAMESPACE_URL, "https://govdx/ckan")

FREQUENCY = {
    "realtime": "UPDATE_CONT",
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "monthly": "MONTHLY",
    "quarterly": "QUARTERLY",
    "yearly": "ANNUAL",
    "irregular": "IRREG",
}
EU_FREQ = "http://publications.europa.eu/resource/authority/frequency/"
EU_ACCESS = "http://publications.europa.eu/resource/authority/access-right/"

DCAT_CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
}


class CkanQueryError(ValueError):
    """A CKAN ``q``/``fq``/``sort`` parameter cannot be parsed (CKAN: Search Query Error)."""


def is_open(entry: Entry) -> bool:
    """Published and open type ``unconditional`` or ``conditional``."""
    return bool(entry.summary["published"]) and entry.summary["open"]["type"] in OPEN_TYPES


def package_name(code: str) -> str:
    """CKAN name of an entry: the code, lowercased, ``.`` → ``-`` (CKAN: ``[a-z0-9_-]{2,100}``)."""
    return code.lower().replace(".", "-")


def package_id(code: str) -> str:
    """Stable CKAN id of an entry: UUID5 of the code."""
    return str(uuid.uuid5(_NS, f"dataset:{code}"))


def org_name(dept_code: str) -> str:
    """CKAN name of a department (its code, lowercased)."""
    return dept_code.lower().replace(".", "-")


def org_id(dept_code: str) -> str:
    """Stable CKAN id of a department: UUID5 of its code."""
    return str(uuid.uuid5(_NS, f"organization:{dept_code}"))


def _ckan_time(iso: str | None) -> str | None:
    if iso is None:
        return None
    return datetime.fromisoformat(iso).astimezone(UTC).replace(tzinfo=None).isoformat()


def organization_dict(dept: dict[str, str], package_count: int) -> dict[str, Any]:
    """CKAN organization dict of a department ``{"code", "name"}``."""
    return {
        "id": org_id(dept["code"]),
        "name": org_name(dept["code"]),
        "title": dept["name"],
        "display_name": dept["name"],
        "description": f"{dept['name']}（部门代码 {dept['code']}）",
        "type": "organization",
        "is_organization": True,
        "state": "active",
        "approval_status": "approved",
        "image_url": "",
        "image_display_url": "",
        "created": None,
        "package_count": package_count,
    }


def package_dict(entry: Entry, base_url: str) -> dict[str, Any]:
    """CKAN package dict of an open entry (metadata only, no resources with data)."""
    s = entry.summary
    dept = s["department"]
    extras = {
        "identifier": s["code"],
        "table_name": s["name"],
        "open_type": s["open"]["type"],
        "open_type_zh": s["open"]["type_zh"],
        "open_conditions": s["open"]["conditions"] or "",
        "share_type": s["share"]["type"],
        "update_cycle": s["update_cycle"],
        "grade": s["grade"],
        "current_version": "" if s["current_version"] is None else str(s["current_version"]),
        "fields": ", ".join(f"{f['name']}:{f['type']}" for f in s["fields"]),
        "dcat_jsonld": f"{base_url}/dataset/{package_name(s['code'])}.jsonld",
    }
    org = organization_dict(dept, 0)
    org.pop("package_count")
    tags = [
        {
            "id": str(uuid.uuid5(_NS, f"tag:{t}")),
            "name": t,
            "display_name": t,
            "state": "active",
            "vocabulary_id": None,
        }
        for t in s["tags"]
    ]
    return {
        "id": package_id(s["code"]),
        "name": package_name(s["code"]),
        "title": s["title"],
        "notes": s["summary"] or "",
        "type": "dataset",
        "state": "active",
        "private": False,
        "url": "",
        "version": extras["current_version"] or None,
        "author": dept["name"],
        "author_email": None,
        "maintainer": dept["name"],
        "maintainer_email": None,
        "license_id": "notspecified",
        "license_title": "License not specified",
        "isopen": s["open"]["type"] == "unconditional",
        "metadata_created": _ckan_time(s["created_at"]),
        "metadata_modified": _ckan_time(s["updated_at"]),
        "owner_org": org["id"],
        "organization": org,
        "tags": tags,
        "num_tags": len(tags),
        "groups": [],
        "resources": [],
        "num_resources": 0,
        "relationships_as_object": [],
        "relationships_as_subject": [],
        "extras": [{"key": k, "value": v} for k, v in extras.items()],
    }


def _terms(text: str, what: str) -> list[tuple[str | None, str]]:
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise CkanQueryError(f"{what}: {exc}") from exc
    out: list[tuple[str | None, str]] = []
    for p in parts:
        p = p.lstrip("+")
        if p in ("", "*:*", "*", "AND"):
            continue
        if ":" in p:
            k, v = p.split(":", 1)
            out.append((k, v.strip('"')))
        else:
            out.append((None, p))
    return out


def _match(entry: Entry, key: str | None, value: str) -> bool:
    s = entry.summary
    v = value.lower()
    if key is None or key in ("text", "q"):
        return v in entry.text
    if key in ("organization", "owner_org"):
        return v in (org_name(s["department"]["code"]), org_id(s["department"]["code"]))
    if key in ("tags", "tag"):
        return value in s["tags"]
    if key == "name":
        return v == package_name(s["code"])
    if key == "id":
        return v == package_id(s["code"])
    if key in ("title", "notes"):
        return v in (s["title"] if key == "title" else s["summary"] or "").lower()
    if key == "res_format":
        return False  # no resources are published
    if key == "license_id":
        return v == "notspecified"
    if key == "open_type":
        return v == s["open"]["type"]
    raise CkanQueryError(f"unsupported search field {key!r}")


_SORT_KEYS = {
    "score": lambda e: 0,
    "name": lambda e: package_name(e.code),
    "title_string": lambda e: e.summary["title"],
    "metadata_modified": lambda e: e.summary["updated_at"] or "",
    "metadata_created": lambda e: e.summary["created_at"] or "",
}


def package_search(
    entries: list[Entry], *, q: str, fq: str, rows: int, start: int, sort: str, base_url: str
) -> dict[str, Any]:
    """CKAN ``package_search`` over the open entries.

    Returns:
        ``{"count", "results" (package dicts), "sort", "facets", "search_facets"}``.

    Raises:
        CkanQueryError: unbalanced quotes, an unsupported field, or a bad sort clause.
    """
    terms = _terms(q, "q") + _terms(fq, "fq")
    found = [e for e in entries if is_open(e) and all(_match(e, k, v) for k, v in terms)]
    clauses = [c.split() for c in sort.split(",") if c.strip()]
    for clause in reversed(clauses):
        if len(clause) not in (1, 2) or clause[0] not in _SORT_KEYS:
            raise CkanQueryError(f"sort: cannot sort by {' '.join(clause)!r}")
        desc = len(clause) == 2 and clause[1].lower() == "desc"
        if len(clause) == 2 and clause[1].lower() not in ("asc", "desc"):
            raise CkanQueryError(f"sort: direction {clause[1]!r} is not asc or desc")
        found.sort(key=_SORT_KEYS[clause[0]], reverse=desc)
    return {
        "count": len(found),
        "results": [package_dict(e, base_url) for e in found[start : start + rows]],
        "sort": sort,
        "facets": {},
        "search_facets": {},
    }


def find_open(entries: list[Entry], ident: str) -> Entry | None:
    """The open entry whose CKAN name, id or code is ``ident``, or None."""
    for e in entries:
        if is_open(e) and ident in (package_name(e.code), package_id(e.code), e.code):
            return e
    return None


def organizations(entries: list[Entry]) -> list[dict[str, Any]]:
    """Departments with at least one open entry, as CKAN organization dicts, by name."""
    counts: dict[str, int] = {}
    depts: dict[str, dict[str, str]] = {}
    for e in entries:
        if is_open(e):
            counts[e.department] = counts.get(e.department, 0) + 1
            depts[e.department] = e.summary["department"]
    return sorted(
        (organization_dict(depts[c], n) for c, n in counts.items()), key=lambda o: o["name"]
    )


# --- DCAT-AP 3 ----------------------------------------------------------------------------------
def _zh(text: str) -> dict[str, str]:
    return {"@language": "zh", "@value": text}


def dcat_dataset(entry: Entry, base_url: str) -> dict[str, Any]:
    """A ``dcat:Dataset`` node (DCAT-AP 3: title, description mandatory; publisher, keyword,
    frequency, access rights, issued/modified, landing page, version)."""
    s = entry.summary
    dept = s["department"]
    node: dict[str, Any] = {
        "@id": f"{base_url}/dataset/{package_name(s['code'])}",
        "@type": "dcat:Dataset",
        "dct:identifier": s["code"],
        "dct:title": _zh(s["title"]),
        "dct:description": _zh(s["summary"] or s["title"]),
        "dct:publisher": {
            "@id": f"{base_url}/organization/{org_name(dept['code'])}",
            "@type": "foaf:Organization",
            "foaf:name": _zh(dept["name"]),
        },
        "dcat:keyword": [_zh(t) for t in s["tags"]],
        "dct:accrualPeriodicity": {"@id": EU_FREQ + FREQUENCY.get(s["update_cycle"], "UNKNOWN")},
        "dct:accessRights": {
            "@id": EU_ACCESS + ("PUBLIC" if s["open"]["type"] == "unconditional" else "RESTRICTED")
        },
        "dcat:landingPage": {
            "@id": f"{base_url}/api/3/action/package_show?id={package_name(s['code'])}"
        },
        "dct:modified": {"@value": s["updated_at"], "@type": "xsd:dateTime"},
    }
    if s["published_at"]:
        node["dct:issued"] = {"@value": s["published_at"], "@type": "xsd:dateTime"}
    if s["current_version"] is not None:
        node["dcat:version"] = str(s["current_version"])
    if s["open"]["conditions"]:
        node["rdfs:comment"] = _zh(f"开放条件：{s['open']['conditions']}")
    return node


def dcat_catalog(entries: list[Entry], base_url: str) -> dict[str, Any]:
    """The ``dcat:Catalog`` of every open entry, as a JSON-LD document."""
    return {
        "@context": DCAT_CONTEXT,
        "@id": f"{base_url}/catalog",
        "@type": "dcat:Catalog",
        "dct:title": _zh("govdx 开放数据目录"),
        "dct:description": _zh("政务数据共享交换平台中可开放的数据资源目录（仅元数据）"),
        "dct:publisher": {"@id": f"{base_url}/", "@type": "foaf:Agent", "foaf:name": "govdx"},
        "dcat:dataset": [dcat_dataset(e, base_url) for e in entries if is_open(e)],
    }


def dcat_document(entry: Entry, base_url: str) -> dict[str, Any]:
    """One dataset as a standalone JSON-LD document (with ``@context``)."""
    return {"@context": DCAT_CONTEXT, **dcat_dataset(entry, base_url)}
