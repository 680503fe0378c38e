"""Landing: the key store is never read as a data source."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines import SourceError
from pipelines._land import land
from privacy import Keyring, LocalKms

KEK_HEX = "000102030405060708090a0b0c0d0e0f"


def test_a_file_of_the_key_store_is_refused_before_it_is_read(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "keys", LocalKms.from_hex(KEK_HEX))
    ring.current("SWJ-0001")
    secret = tmp_path / "keys" / "deks" / "SWJ-0001.json"
    assert secret.is_file()
    via_link = tmp_path / "innocent.csv"
    via_link.symlink_to(secret)
    for src in (secret, via_link):
        with pytest.raises(SourceError, match="key store cannot be a data source") as err:
            land(src, dataset_code="X-1", landing_dir=tmp_path / "landing", keyring=ring)
        assert str(src) in str(err.value)
    assert not (tmp_path / "landing").exists()  # nothing landed
    ok = tmp_path / "data.csv"
    ok.write_text("a\n1\n", encoding="utf-8")
    assert land(ok, dataset_code="X-1", landing_dir=tmp_path / "landing", keyring=ring).newly_landed


def test_an_inbox_source_must_resolve_inside_its_own_departments_folder(tmp_path: Path) -> None:
    from pipelines._land import check_inbox_source

    inbox = tmp_path / "inbox"
    (inbox / "SWJ").mkdir(parents=True)
    (inbox / "SCJG").mkdir()
    theirs = inbox / "SWJ" / "inv.csv"
    theirs.write_text("a\n1\n", encoding="utf-8")
    (inbox / "SCJG" / "own.csv").write_text("a\n1\n", encoding="utf-8")
    # a link placed after the upload was accepted: caught at ingest, naming the declared file
    (inbox / "SCJG" / "later.csv").symlink_to(theirs)
    declared = str(inbox / "SCJG" / "later.csv")
    with pytest.raises(SourceError, match=r"leads out of .*inbox/SCJG/") as err:
        check_inbox_source(declared, None, inbox, "SCJG")
    assert declared in str(err.value)
    with pytest.raises(SourceError, match="leads out of"):  # relative, through ..
        check_inbox_source("../SWJ/inv.csv", inbox / "SCJG", inbox, "SCJG")
    check_inbox_source(str(inbox / "SCJG" / "own.csv"), None, inbox, "SCJG")  # its own: fine
    check_inbox_source(str(theirs), None, inbox, "SWJ")
    check_inbox_source(str(tmp_path / "elsewhere.csv"), None, inbox, "SCJG")  # not the inbox
