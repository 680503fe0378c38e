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
