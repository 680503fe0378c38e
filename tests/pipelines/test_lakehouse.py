import pyarrow as pa
import pytest

from pipelines import CommitError, Lakehouse


@pytest.fixture
def lake(tmp_path) -> Lakehouse:
    return Lakehouse(tmp_path / "lakehouse", tmp_path / "quarantine")


def test_commit_versions_and_is_idempotent_per_digest(lake):
    t1 = pa.table({"a": [1, 2, 3]})
    r0 = lake.commit("ds", t1, digest="d1", run_id="r1")
    assert (r0.version, r0.rows, r0.created) == (0, 3, True)
    again = lake.commit("ds", t1, digest="d1", run_id="r2")
    assert (again.version, again.created) == (0, False)
    r1 = lake.commit("ds", pa.table({"a": [4]}), digest="d2", run_id="r3")
    assert r1.version == 1
    assert lake.read("ds", 0)["a"].to_pylist() == [1, 2, 3]
    assert lake.read("ds")["a"].to_pylist() == [4]
    assert lake.version_of_digest("ds", "d1") == 0
    assert lake.version_of_digest("ds", "nope") is None


def test_failed_write_leaves_previous_version(lake, monkeypatch):
    lake.commit("ds", pa.table({"a": [1]}), digest="d1", run_id="r1")
    import pipelines._lakehouse as mod

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(mod, "write_deltalake", boom)
    with pytest.raises(CommitError, match="disk full"):
        lake.commit("ds", pa.table({"a": [2]}), digest="d2", run_id="r2")
    monkeypatch.undo()
    assert lake.current_version("ds") == 0
    assert lake.read("ds")["a"].to_pylist() == [1]


def test_read_missing_version_names_table(lake):
    with pytest.raises(CommitError, match="'ds'"):
        lake.read("ds", 5)
    assert lake.current_version("ds") is None
    assert lake.read_quarantine("ds") is None


def test_schema_is_read_from_the_footer_with_field_metadata(lake):
    meta = {b"govdx.cipher": b"SM4", b"govdx.key_id": b"k1-abcd"}
    schema = pa.schema([pa.field("id", pa.binary(), metadata=meta), pa.field("n", pa.int64())])
    t0 = pa.table({"id": [b"x", b"y"], "n": [1, 2]}, schema=schema)
    lake.commit("t", t0, digest="a" * 64, run_id="r0")
    lake.commit("t", pa.table({"n": [3]}), digest="b" * 64, run_id="r1")
    assert lake.schema("t", 0) == lake.read("t", 0).schema
    assert lake.schema("t", 0).field("id").metadata == meta
    assert lake.schema("t").names == ["n"]  # latest
    with pytest.raises(CommitError, match="'t' has no version 7"):
        lake.schema("t", 7)
