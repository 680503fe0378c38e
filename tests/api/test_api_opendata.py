"""CKAN action API (read with the ``ckanapi`` client) and the DCAT-AP 3 JSON-LD export: open
entries only."""

from __future__ import annotations

import ckanapi
import pytest
from api_testdata import OPEN_CODE


@pytest.fixture(scope="module")
def ckan(server):
    with ckanapi.RemoteCKAN(server) as c:
        yield c


def test_ckanapi_package_search_and_show(ckan) -> None:
    res = ckan.action.package_search(q="人口", rows=5)
    assert res["count"] == 1
    pkg = res["results"][0]
    assert pkg["name"] == "tjj-pub-0001" and pkg["title"] == "分省年度人口抽样调查样本数据"
    assert pkg["organization"]["name"] == "tjj" and pkg["organization"]["title"] == "国家统计局"
    assert {t["name"] for t in pkg["tags"]} == {"人口", "抽样调查", "分省年度数据"}
    extras = {e["key"]: e["value"] for e in pkg["extras"]}
    assert extras["identifier"] == OPEN_CODE and extras["open_type"] == "unconditional"
    shown = ckan.action.package_show(id="tjj-pub-0001")
    assert shown == pkg
    assert ckan.action.package_show(id=pkg["id"])["name"] == "tjj-pub-0001"


def test_ckan_parameters(ckan) -> None:
    assert ckan.action.package_search(fq="organization:tjj")["count"] == 1
    assert ckan.action.package_search(fq='tags:"人口"', q="*:*")["count"] == 1
    assert ckan.action.package_search(fq="organization:swj")["count"] == 0
    page = ckan.action.package_search(rows=0)
    assert page["count"] == 1 and page["results"] == []
    assert ckan.action.package_search(start=1)["results"] == []
    assert ckan.action.package_search(sort="name asc")["sort"] == "name asc"
    with pytest.raises(ckanapi.SearchQueryError):
        ckan.action.package_search(sort="bogus desc")
    with pytest.raises(ckanapi.ValidationError):
        ckan.action.package_search(rows=5000)
    with pytest.raises(ckanapi.NotFound):
        ckan.action.package_show(id="nope")


def test_not_open_entries_never_appear(ckan, client) -> None:
    # SWJ-0001 and SCJG-0001 are published but open type none; RSJ-0001 is unpublished
    for ident in ("swj-0001", "SWJ-0001", "scjg-0001", "rsj-0001"):
        with pytest.raises(ckanapi.NotFound):
            ckan.action.package_show(id=ident)
        assert client.get(f"/dataset/{ident}.jsonld").status_code == 404
    assert ckan.action.package_list() == ["tjj-pub-0001"]
    assert ckan.action.organization_list() == ["tjj"]
    with pytest.raises(ckanapi.NotFound):
        ckan.action.organization_show(id="swj")
    org = ckan.action.organization_show(id="tjj", include_datasets=True)
    assert org["package_count"] == 1 and [p["name"] for p in org["packages"]] == ["tjj-pub-0001"]
    text = (
        client.get("/catalog.jsonld").text
        + client.get("/api/3/action/package_search", params={"rows": 1000}).text
    )
    for word in ("SWJ-0001", "SCJG-0001", "RSJ-0001", "纳税", "社会保险", "企业登记"):
        assert word not in text


def test_ckan_get_only_client(server) -> None:
    with ckanapi.RemoteCKAN(server, get_only=True) as c:
        c.base_url = "api/3/action/"  # the versioned prefix, by GET
        assert c.action.package_search(q="population sample")["count"] == 1  # English names
        assert c.action.package_search(q="sample_2025")["count"] == 1  # field names match
        assert c.action.package_search(q="tax")["count"] == 0  # tax_payment is not open
        assert c.action.organization_list(all_fields=True)[0]["package_count"] == 1


def test_dcat_catalog_jsonld(client, server) -> None:
    r = client.get("/catalog.jsonld")
    assert r.headers["content-type"] == "application/ld+json"
    doc = r.json()
    assert (
        doc["@type"] == "dcat:Catalog" and doc["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    )
    (ds,) = doc["dcat:dataset"]
    assert ds["@type"] == "dcat:Dataset" and ds["dct:identifier"] == OPEN_CODE
    assert ds["dct:title"] == {"@language": "zh", "@value": "分省年度人口抽样调查样本数据"}
    assert ds["dct:accrualPeriodicity"]["@id"].endswith("/frequency/ANNUAL")
    assert ds["dct:accessRights"]["@id"].endswith("/access-right/PUBLIC")
    assert ds["dct:publisher"]["foaf:name"]["@value"] == "国家统计局"
    one = client.get("/dataset/tjj-pub-0001.jsonld").json()
    assert one["@id"] == ds["@id"] == f"{server}/dataset/tjj-pub-0001"
