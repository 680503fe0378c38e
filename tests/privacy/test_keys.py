"""Envelope keys: KEK file handling, wrapping, keyring persistence, rotation and rewrap."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pyarrow as pa
import pytest

from govdx import DefinitionError, Settings
from privacy import (
    DataKey,
    DecryptionError,
    KeyConfigError,
    KeyManagementError,
    Keyring,
    Kms,
    LocalKms,
    decrypt_column,
    encrypt_column,
    keyring_from_settings,
)

KEK_HEX = "000102030405060708090a0b0c0d0e0f"


@pytest.fixture
def events() -> list[tuple[str, dict]]:
    return []


@pytest.fixture
def ring(tmp_path: Path, events: list) -> Keyring:
    return Keyring(
        tmp_path / "keys", LocalKms.from_hex(KEK_HEX), audit=lambda e, d: events.append((e, d))
    )


# --- KEK ----------------------------------------------------------------------------------------
def test_kek_file_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "kek.key"
    kms = LocalKms.from_file(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 16
    assert LocalKms.from_file(path).kek_id == kms.kek_id
    assert isinstance(kms, Kms)
    assert KEK_HEX not in repr(LocalKms.from_hex(KEK_HEX))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_kek_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "kek.key"
    path.write_text(KEK_HEX + "\n")
    path.chmod(mode)
    with pytest.raises(KeyConfigError, match="chmod 600") as err:
        LocalKms.from_file(path)
    assert isinstance(err.value, DefinitionError)


def test_kek_file_with_bad_content_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kek.key"
    path.write_text("00" * 8)
    path.chmod(0o600)
    with pytest.raises(KeyConfigError, match=r"kek\.key: KEK file must hold 32 hex"):
        LocalKms.from_file(path)


def test_kek_file_missing_without_create_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyConfigError, match="missing"):
        LocalKms.from_file(tmp_path / "kek.key")


@pytest.mark.parametrize("bad", ["zz" * 16, "00" * 15, "00" * 17, ""])
def test_bad_kek_hex_is_refused(bad: str) -> None:
    with pytest.raises(KeyConfigError, match="GOVDX_KEK_HEX"):
        LocalKms.from_hex(bad)


def test_wrap_binds_aad_and_kek() -> None:
    kms = LocalKms.from_hex(KEK_HEX)
    dek = os.urandom(16)
    wrapped = kms.wrap(dek, b"aad-1")
    assert len(wrapped) == 1 + 12 + 16 + 16
    assert kms.unwrap(wrapped, b"aad-1") == dek
    with pytest.raises(KeyManagementError, match="unwrap"):
        kms.unwrap(wrapped, b"aad-2")
    with pytest.raises(KeyManagementError, match="unwrap"):
        LocalKms(os.urandom(16)).unwrap(wrapped, b"aad-1")


# --- keyring ------------------------------------------------------------------------------------
def test_datakey_repr_hides_key() -> None:
    dk = DataKey(
        "D", "k1-00000000", bytes.fromhex("ab" * 16), __import__("datetime").datetime.now()
    )
    assert "ab" * 4 not in repr(dk) and "key=" not in repr(dk)
    with pytest.raises(KeyManagementError, match="16 bytes"):
        DataKey("D", "k1", b"short", dk.created_at)


def test_current_creates_once_and_persists(ring: Keyring, events: list, tmp_path: Path) -> None:
    k1 = ring.current("SCJG-0001")
    assert ring.current("SCJG-0001") == k1
    again = Keyring(tmp_path / "keys", LocalKms.from_hex(KEK_HEX)).current("SCJG-0001")
    assert again.key == k1.key and again.key_id == k1.key_id
    assert [e for e, _ in events] == ["key.create"]
    store = (tmp_path / "keys" / "deks" / "SCJG-0001.json").read_text()
    assert k1.key.hex() not in store
    assert json.loads(store)["current"] == k1.key_id
    assert not list((tmp_path / "keys" / "deks").glob("*.tmp"))
    assert stat.S_IMODE((tmp_path / "keys" / "deks" / "SCJG-0001.json").stat().st_mode) == 0o600


def test_rotation_keeps_old_key_readable(ring: Keyring, events: list) -> None:
    old = ring.current("SCJG-0001")
    cipher = encrypt_column(pa.array(["alice"]), key=old, dataset="SCJG-0001", column="name")
    new = ring.new_data_key("SCJG-0001")
    assert new.key_id != old.key_id and new.key != old.key
    assert ring.current("SCJG-0001") == new
    assert ring.key_ids("SCJG-0001") == [old.key_id, new.key_id]
    fresh = Keyring(ring.keys_dir, LocalKms.from_hex(KEK_HEX))
    old_again = fresh.get("SCJG-0001", old.key_id)
    assert decrypt_column(
        cipher, key=old_again, dataset="SCJG-0001", column="name"
    ).to_pylist() == ["alice"]
    with pytest.raises(DecryptionError):
        decrypt_column(cipher, key=fresh.current("SCJG-0001"), dataset="SCJG-0001", column="name")
    assert events[-1] == (
        "key.rotate",
        {
            "dataset": "SCJG-0001",
            "key_id": new.key_id,
            "previous_key_id": old.key_id,
            "kek_id": ring.kms.kek_id,
        },
    )


def test_get_unknown_key_names_it(ring: Keyring) -> None:
    ring.current("D1")
    with pytest.raises(KeyManagementError, match="no data key 'k9-nope' for dataset 'D1'"):
        ring.get("D1", "k9-nope")


@pytest.mark.parametrize("code", ["../etc", "a/b", "", "x" * 65, "名字"])
def test_bad_dataset_code_is_refused(ring: Keyring, code: str) -> None:
    with pytest.raises(KeyConfigError, match="dataset code"):
        ring.current(code)


def test_rewrap_keeps_deks_and_token_keys(ring: Keyring, events: list, tmp_path: Path) -> None:
    a1 = ring.current("A")
    a2 = ring.new_data_key("A")
    b1 = ring.current("B")
    tok = ring.token_key("resident_id")
    new_kms = LocalKms(os.urandom(16))
    assert ring.rewrap(new_kms) == 4  # 3 DEKs + token master
    assert events[-1][0] == "key.rewrap"
    assert ring.rewrap(new_kms) == 0  # idempotent / resumable
    fresh = Keyring(tmp_path / "keys", new_kms)
    assert [fresh.get("A", a1.key_id).key, fresh.get("A", a2.key_id).key] == [a1.key, a2.key]
    assert fresh.get("B", b1.key_id) == b1
    assert fresh.token_key("resident_id") == tok
    stale = Keyring(tmp_path / "keys", LocalKms.from_hex(KEK_HEX))
    with pytest.raises(KeyManagementError, match="not under the configured KEK"):
        stale.get("A", a1.key_id)


def test_token_key_per_domain_and_stable(ring: Keyring, tmp_path: Path) -> None:
    k = ring.token_key("resident_id")
    assert len(k) == 32
    assert ring.token_key("resident_id") == k
    assert ring.token_key("uscc") != k
    assert Keyring(tmp_path / "keys", LocalKms.from_hex(KEK_HEX)).token_key("resident_id") == k
    with pytest.raises(KeyManagementError, match="non-empty"):
        ring.token_key("")


# --- settings -----------------------------------------------------------------------------------
def test_keyring_from_settings_hex_and_file(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "h1", kek_hex=KEK_HEX)
    assert keyring_from_settings(s).kms.kek_id == LocalKms.from_hex(KEK_HEX).kek_id
    dev = Settings(home=tmp_path / "h2")
    ring = keyring_from_settings(dev)
    assert (dev.keys_dir / "kek.key").exists()
    assert ring.keys_dir == dev.keys_dir
    prod = Settings(home=tmp_path / "h3", env="production")
    with pytest.raises(KeyConfigError, match="missing"):
        keyring_from_settings(prod)


# --- KEK file rotation and concurrency (主密钥轮换与并发) ------------------------------------------
def test_keyring_on_a_kek_file_follows_a_rotation_made_by_another(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "h")
    stale, other = keyring_from_settings(s), keyring_from_settings(s)
    a1 = stale.current("A")
    old_id = stale.kms.kek_id
    out = other.rotate_kek_file()
    assert (out["old_kek_id"], out["rewrapped"]) == (old_id, 1)
    assert not (s.keys_dir / "kek.key.next").exists()
    stale._cache.clear()
    assert stale.get("A", a1.key_id).key == a1.key  # reloads kek.key under the lock
    a2 = stale.new_data_key("A")
    b1 = stale.current("B")
    for ds in ("A", "B"):
        doc = json.loads((s.keys_dir / "deks" / f"{ds}.json").read_text())
        assert {e["kek_id"] for e in doc["keys"]} == {out["new_kek_id"]}
    hist = json.loads((s.keys_dir / "kek-history.json").read_text())["retired"]
    assert [(h["kek_id"], h["replaced_by"]) for h in hist] == [(old_id, out["new_kek_id"])]
    assert stat.S_IMODE((s.keys_dir / "kek.key").stat().st_mode) == 0o600
    fresh = keyring_from_settings(s)
    assert [fresh.get("A", a2.key_id), fresh.get("B", b1.key_id)] == [a2, b1]
    with pytest.raises(KeyConfigError, match="rotate_kek_file"):
        fresh.rewrap(LocalKms(os.urandom(16)))


def test_rotate_kek_file_needs_a_key_file(ring: Keyring) -> None:
    with pytest.raises(KeyConfigError, match="not a key file"):
        ring.rotate_kek_file()


def test_keyring_lock_is_reentrant_and_serialises_threads(tmp_path: Path) -> None:
    import threading

    s = Settings(home=tmp_path / "h")
    rings = [keyring_from_settings(s) for _ in range(2)]
    with rings[0]._locked(), rings[0]._locked():  # nested: no self-deadlock
        rings[0].new_data_key("A")
    made: list[str] = []

    def rotate(ring: Keyring) -> None:
        for _ in range(10):
            made.append(ring.new_data_key("A").key_id)
        ring.rotate_kek_file()

    threads = [threading.Thread(target=rotate, args=(r,)) for r in (*rings, rings[0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = keyring_from_settings(s).key_ids("A")
    assert len(ids) == 31 and sorted(made) == sorted(ids[1:])
    assert [int(k.split("-")[0][1:]) for k in ids] == list(range(1, 32))
    fresh = keyring_from_settings(s)
    doc = json.loads((s.keys_dir / "deks" / "A.json").read_text())
    assert {e["kek_id"] for e in doc["keys"]} == {fresh.kms.kek_id}
    assert len(json.loads((s.keys_dir / "kek-history.json").read_text())["retired"]) == 3


def test_rewrap_checks_every_key_first_and_repairs_with_a_retired_kek(
    ring: Keyring, tmp_path: Path
) -> None:
    a1 = ring.current("A")
    lost_kek = LocalKms(os.urandom(16))
    b1 = Keyring(ring.keys_dir, lost_kek).current("B")  # as a pre-fix race left it
    new_kms = LocalKms(os.urandom(16))
    with pytest.raises(KeyManagementError) as err:
        ring.rewrap(new_kms)
    msg = str(err.value)
    assert f"key {b1.key_id!r} is wrapped under {lost_kek.kek_id}" in msg
    assert f"{lost_kek.kek_id} is not in keys/kek-history.json" in msg and a1.key_id not in msg
    # this keyring's KEK is not a file (as with GOVDX_KEK_HEX): the CLI's --old-kek repair
    # cannot apply, the hint names the call that does
    assert "Keyring.rewrap(<current KMS>, retired=[" in msg and "--old-kek" not in msg
    doc = json.loads((ring.keys_dir / "deks" / "A.json").read_text())
    assert doc["keys"][0]["kek_id"] == ring.kms.kek_id  # nothing rewritten
    assert ring.rewrap(new_kms, retired=[lost_kek]) == 2
    fresh = Keyring(ring.keys_dir, new_kms)
    assert [fresh.get("A", a1.key_id), fresh.get("B", b1.key_id)] == [a1, b1]
