"""Sharing-rate report on the seeded scenario (see conftest.py): every figure by hand, exactly."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

import pytest

from reports import Period, Ratio, ReportDefinitionError, sharing_rate


def test_ratio_exact_and_display():
    assert Ratio(2, 3).fraction == Fraction(2, 3)
    assert Ratio(2, 3).percent() == "66.7%"
    assert Ratio(1, 8).percent() == "12.5%"
    assert Ratio(1, 16).percent(1) == "6.3%"  # 6.25 rounds half up
    assert Ratio(0, 0).fraction is None and Ratio(0, 0).value is None
    assert Ratio(0, 0).percent() == "—" and str(Ratio(0, 0)) == "— (0 of 0)"
    assert Ratio(1, 2) + Ratio(0, 0) + Ratio(2, 3) == Ratio(3, 5)
    with pytest.raises(ValueError, match="must be ≥ 0"):
        Ratio(-1, 2)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-01..2026-03", "2026-01-01", "2026-04-01"),
        ("2026-02", "2026-02-01", "2026-03-01"),
        ("2025", "2025-01-01", "2026-01-01"),
        ("2026-02-28..2026-02-28", "2026-02-28", "2026-03-01"),
    ],
)
def test_period_parse(text, start, end):
    p = Period.parse(text)
    assert p.start.date().isoformat() == start and p.end.date().isoformat() == end


def test_period_open_and_refused():
    assert Period.parse(None) == Period() and Period.parse("..2026-06").start is None
    assert Period.parse("2026-06..").end is None
    with pytest.raises(ReportDefinitionError, match="FROM '2026-13'"):
        Period.parse("2026-13..2026-14")
    with pytest.raises(ReportDefinitionError, match="not YYYY"):
        Period.parse("March..2026")
    with pytest.raises(ReportDefinitionError, match="not before"):
        Period.parse("2026-03..2026-01")


def test_overall_figures_by_hand(scenario, session):
    rep = sharing_rate(session=session)
    f = {x.key: x.value for x in rep.figures}
    # entries: SCJG-0001, SWJ-0001, RSJ-0001 (conditional), TJJ-T001 (unconditional, open),
    # SCJG-T002 (none)
    assert f["catalog_share_rate"] == Ratio(4, 5)
    assert f["open_rate"] == Ratio(1, 5)
    # used by another department through a released job: SWJ-0001 (J1 bank), SCJG-0001 (J2 bank);
    # J3 is SWJ's own analyst on SWJ's data and does not count
    assert f["actual_share_rate"] == Ratio(2, 4)
    assert f["actual_share_rate"].fraction == Fraction(1, 2)
    # approved J1, J2, J3 of 7 submitted
    assert f["request_satisfaction"] == Ratio(3, 7)
    # decisions 1800, 7200, 600, 3600, 120, 900 s → median (900 + 1800) / 2
    assert f["median_decision_seconds"] == Fraction(1350)
    for fig in rep.figures:
        assert fig.definition, fig.key


def test_per_department_rows_and_zero_of_zero(scenario, session):
    rep = sharing_rate(session=session)
    assert [r["department"] for r in rep.table("departments").rows] == [
        "GAJ",
        "RSJ",
        "SCJG",
        "SWJ",
        "TJJ",
    ]
    scjg = rep.row("departments", "SCJG")
    assert scjg["entries"] == 2
    assert scjg["catalog_share_rate"] == Ratio(1, 2)
    assert scjg["actual_share_rate"] == Ratio(1, 1)
    assert scjg["request_satisfaction"] == Ratio(1, 2)
    assert scjg["median_decision_seconds"] == Fraction(900 + 7200, 2)
    assert scjg["top_rejection_reason"] == "超出授权范围 (1)"
    swj = rep.row("departments", "SWJ")
    assert (swj["actual_share_rate"], swj["request_satisfaction"]) == (Ratio(1, 1), Ratio(2, 3))
    assert swj["median_decision_seconds"] == Fraction(1200)
    rsj = rep.row("departments", "RSJ")
    assert (rsj["actual_share_rate"], rsj["request_satisfaction"]) == (Ratio(0, 1), Ratio(0, 2))
    assert rsj["median_decision_seconds"] == Fraction(3600 + 120, 2)
    assert rsj["top_rejection_reason"] == "用途不明确 (2)"
    tjj = rep.row("departments", "TJJ")
    assert (tjj["catalog_share_rate"], tjj["open_rate"], tjj["actual_share_rate"]) == (
        Ratio(1, 1),
        Ratio(1, 1),
        Ratio(0, 1),
    )
    gaj = rep.row("departments", "GAJ")  # a department with no entries: 0 of 0, no error
    for key in ("catalog_share_rate", "actual_share_rate", "request_satisfaction", "open_rate"):
        assert gaj[key] == Ratio(0, 0) and gaj[key].percent() == "—"
    assert gaj["median_decision_seconds"] is None


def test_rejection_reasons_and_trend(scenario, session):
    rep = sharing_rate(session=session)
    assert rep.table("rejection_reasons").rows == [
        {"reason": "用途不明确", "jobs": 2},
        {"reason": "超出授权范围", "jobs": 1},
    ]
    trend = rep.table("trend").rows
    assert sum(r["submitted"] for r in trend) == 7
    assert sum(r["approved"] for r in trend) == 3
    assert sum(r["released"] for r in trend) == 3


def test_period_filters(scenario, session):
    t0 = scenario.t0
    early = sharing_rate(session=session, period=Period(t0, t0 + timedelta(hours=2)))
    f = {x.key: x.value for x in early.figures}
    assert f["actual_share_rate"] == Ratio(1, 4)  # only J1 was released before T0+2h
    assert f["request_satisfaction"] == Ratio(2, 2)  # J1, J2 submitted; both approved later
    assert f["median_decision_seconds"] == Fraction(1800 + 7200, 2)
    before = sharing_rate(session=session, period=Period(t0 - timedelta(days=1), t0))
    g = {x.key: x.value for x in before.figures}
    assert g["actual_share_rate"] == Ratio(0, 4)
    assert g["request_satisfaction"] == Ratio(0, 0) and g["median_decision_seconds"] is None
    assert g["catalog_share_rate"] == Ratio(4, 5)  # entries existed before the jobs


def test_department_filter_unknown_department_is_zero(scenario, session):
    rep = sharing_rate(session=session, department="SWJ")
    f = {x.key: x.value for x in rep.figures}
    assert (f["catalog_share_rate"], f["request_satisfaction"]) == (Ratio(1, 1), Ratio(2, 3))
    assert [r["department"] for r in rep.table("departments").rows] == ["SWJ"]
    none = sharing_rate(session=session, department="DSJJ")
    assert none.figure("catalog_share_rate").value == Ratio(0, 0)
    assert none.figure("median_decision_seconds").value is None
    assert none.table("departments").rows[0]["department"] == "DSJJ"


def test_public_api_is_exported():
    import reports

    public = {n for n in dir(reports) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(reports, n)).__name__ == "module"}
    assert public - modules == set(reports.__all__)
