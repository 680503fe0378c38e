"""Duplicate-collection, security-coverage and quality reports on the seeded scenario, by hand."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import catalog
from pipelines._keyops import contract_of, encryption_coverage
from pipelines._protect import CIPHER_META, KEY_META
from privacy import decrypt_column, keyring_from_settings, token_column
from reports import Ratio, duplicate_collection, quality_rollup, security_coverage
from sandbox import Auditor

# (entry, table, field, element) of every identifier field in the demo
IDENT = [
    ("SCJG-0001", "enterprise_registry", "uscc", "uscc", "SCJG"),
    ("SCJG-0001", "enterprise_registry", "legal_rep_id", "resident_id", "SCJG"),
    ("SWJ-0001", "tax_payment", "taxpayer_id", "uscc", "SWJ"),
    ("RSJ-0001", "social_insurance", "employer_uscc", "uscc", "RSJ"),
    ("RSJ-0001", "social_insurance", "resident_id", "resident_id", "RSJ"),
]


@pytest.fixture(scope="module")
def plain(scenario):
    """Plaintext (decrypted where stored encrypted) and stored tokens of each identifier field."""
    from pipelines import Lakehouse

    lh = Lakehouse(scenario.settings.lakehouse_dir, scenario.settings.quarantine_dir)
    keyring = keyring_from_settings(scenario.settings)
    out = {}
    for code, table, field, element, dept in IDENT:
        t = lh.read(table)
        col = t[field]
        meta = t.schema.field(field).metadata or {}
        if meta.get(CIPHER_META) == b"SM4":
            key = keyring.get(code, meta[KEY_META].decode())
            col = decrypt_column(col, key=key, dataset=code, column=field)
        out[(code, field)] = (col, t[f"{field}_token"], element, dept, keyring)
    return out


def test_tokens_are_keyed_per_element_domain(plain):
    """The same identifier gives the same token in two datasets (one key per element)."""
    reg_plain, reg_tok, *_ = plain[("SCJG-0001", "uscc")]
    tax_plain, tax_tok, _, _, keyring = plain[("SWJ-0001", "taxpayer_id")]
    reg = pa.table({"v": reg_plain, "t1": reg_tok})
    tax = pa.table({"v": tax_plain, "t2": tax_tok})
    joined = reg.join(tax, "v", join_type="inner")
    assert joined.num_rows > 100
    assert pc.all(pc.equal(joined["t1"], joined["t2"])).as_py()
    # and the stored tokens are HMAC-SM3 under the element's key (recomputed here)
    again = token_column(tax_plain, key=keyring.token_key("uscc"), domain="uscc")
    assert again.equals(pc.cast(tax_tok, pa.string()).combine_chunks())


def _norm(col):
    return pc.unique(
        pc.utf8_upper(pc.utf8_trim_whitespace(pc.drop_null(col))).combine_chunks()
        if isinstance(col, pa.ChunkedArray)
        else pc.utf8_upper(pc.utf8_trim_whitespace(pc.drop_null(col)))
    )


def test_duplicate_rate_by_hand_on_plaintext(scenario, session, lake, plain):
    by = {}  # (element, dept) -> distinct normalised plaintext
    for (_, _), (col, _, element, dept, _) in plain.items():
        prev = by.get((element, dept))
        vals = _norm(col)
        by[(element, dept)] = vals if prev is None else pc.unique(pa.concat_arrays([prev, vals]))
    expected: dict[str, Ratio] = {}
    for (element, dept), mine in by.items():
        others = [v for (e, d), v in by.items() if e == element and d != dept]
        held = int(pc.sum(pc.is_in(mine, value_set=pc.unique(pa.concat_arrays(others)))).as_py())
        expected[dept] = expected.get(dept, Ratio(0, 0)) + Ratio(held, len(mine))
    rep = duplicate_collection(session=session, lakehouse=lake)
    for dept, ratio in expected.items():
        assert rep.row("departments", dept)["duplicate_instance_rate"] == ratio, dept
    total = sum(expected.values(), Ratio(0, 0))
    assert rep.figure("duplicate_instance_rate").value == total
    assert rep.row("departments", "GAJ")["duplicate_instance_rate"] == Ratio(0, 0)
    # tax payers are registered enterprises: almost all of SWJ's USCCs are SCJG's
    swj = rep.row("departments", "SWJ")["duplicate_instance_rate"]
    assert swj.denominator == len(by[("uscc", "SWJ")]) and swj.fraction > 0.9


def test_duplicated_elements_and_suggestions(scenario, session, lake):
    rep = duplicate_collection(session=session, lakehouse=lake)
    elements = {r["element"]: r["departments"] for r in rep.table("elements").rows}
    # uscc: SCJG, SWJ, RSJ (and the test entries of SCJG/TJJ); resident_id: SCJG, RSJ, TJJ;
    # person_name: SCJG, RSJ; org_name: SCJG, SWJ
    assert elements == {
        "org_name": "SCJG, SWJ",
        "person_name": "RSJ, SCJG",
        "resident_id": "RSJ, SCJG, TJJ",
        "uscc": "RSJ, SCJG, SWJ, TJJ",
    }
    assert rep.figure("duplicated_elements").value == 4
    sugg = {
        (s["department"], s["entry"], s["reuse_entry"]): s for s in rep.table("suggestions").rows
    }
    swj = sugg[("SWJ", "SWJ-0001", "SCJG-0001")]
    assert swj["fields"] == "taxpayer_id, taxpayer_name"
    assert "reuse SCJG's dataset SCJG-0001" in swj["text"]
    assert ("RSJ", "RSJ-0001", "SCJG-0001") in sugg
    # the registry's residents are not the insured persons: no resident_id-based suggestion
    assert all("resident_id" not in s["matched_on"] for s in sugg.values())


def test_security_coverage_by_hand(scenario, session, lake):
    factory = catalog.open_catalog(scenario.settings.catalog_db_url)
    auditor = Auditor(factory, scenario.settings.keys_dir)
    rep = security_coverage(session=session, lakehouse=lake, verify_audit=auditor.verify)
    factory.kw["bind"].dispose()
    f = {x.key: x.value for x in rep.figures}
    # protected fields of stored entries: legal_rep_id; tax_paid; resident_id, contribution_base
    assert f["encrypted_storage"] == Ratio(4, 4)
    # demo contracts state grade and pi for all 7 + 5 + 5 fields; the two test entries for 1 of 3
    assert f["fields_classified"] == Ratio(19, 23)
    # J1, J2, J3 needed a reviewer (important data) and had steward + reviewer
    assert f["two_person_approval"] == Ratio(3, 3)
    assert f["audit_chain"] == "yes" and f["audit_entries_checked"] > 20
    assert rep.row("departments", "SCJG")["fields_classified"] == Ratio(8, 10)
    assert rep.row("departments", "RSJ")["encrypted_storage"] == Ratio(2, 2)
    assert rep.row("departments", "TJJ")["encrypted_storage"] == Ratio(0, 0)  # no stored version
    # the same answer as the key-operations coverage (which reads the whole version)
    with factory() as s:
        for ds in catalog.list_datasets(session=s):
            v = catalog.current_version(session=s, code=ds.code)
            if v is None:
                continue
            cov = encryption_coverage(contract_of(ds), lakehouse=lake, version=v.delta_version)
            row = next(r for r in rep.table("entries").rows if r["entry"] == ds.code)
            assert (row["protected"], row["encrypted"]) == (len(cov.protected), len(cov.encrypted))


def test_quality_rollup_by_hand(scenario, session):
    from quality import quality_history

    hist = quality_history(session=session)
    rep = quality_rollup(session=session)
    for dept in ("SCJG", "SWJ", "RSJ"):
        rows = [r for r in hist if r.dataset.department_code == dept]
        passed, read = sum(r.rows_passed for r in rows), sum(r.rows_in for r in rows)
        got = rep.row("departments", dept)
        assert got["row_pass_rate"] == Ratio(passed, read)
        assert got["versions"] == len(rows)
        assert got["mean_overall"] == pytest.approx(sum(r.overall_score for r in rows) / len(rows))
    assert rep.figure("versions_scored").value == len(hist)
    assert rep.figure("row_pass_rate").value == Ratio(
        sum(r.rows_passed for r in hist), sum(r.rows_in for r in hist)
    )
    assert rep.row("departments", "GAJ")["row_pass_rate"] == Ratio(0, 0)
