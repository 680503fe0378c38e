"""Land step (落地): copy a department file into the landing zone, immutable, named by SM3.

The landed copy is encrypted at rest under the dataset's data key (see ``privacy`` file
encryption); its name is the SM3 digest (GB/T 32905-2016) of the plaintext, so landing the same
bytes twice is a no-op and any later step can prove which bytes it read.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines._errors import SourceError
from privacy import Keyring, decrypt_file, encrypt_file, sm3_file


@dataclass(frozen=True)
class LandedFile:
    """A raw file in the landing zone.

    Attributes:
        dataset_code: the dataset the file was landed for.
        source_name: the file name as delivered by the department.
        digest: SM3 hex digest (64 chars) of the plaintext bytes.
        size_bytes: plaintext size in bytes.
        path: the encrypted landed copy (``landing/<code>/<digest><suffix>.sm4``).
        newly_landed: False when the same bytes were already landed.
    """

    dataset_code: str
    source_name: str
    digest: str
    size_bytes: int
    path: str
    newly_landed: bool

    def to_dict(self) -> dict:
        return asdict(self)


def check_inbox_source(declared: str | Path, base_dir: Path | None, inbox: Path, dept: str) -> None:
    """A source named under the home's inbox must resolve inside its own department's folder.

    Uploaded contracts read from ``<home>/inbox/<DEPT>/`` (api.crud checks the path at upload);
    a symbolic link placed there *after* the upload could still lead to another department's
    raw file, so every ingest checks again, after resolving links.

    Args:
        declared: ``source.path`` as the contract declares it. base_dir: the contract's folder
            (relative paths resolve against it). inbox: ``Settings.inbox_dir``. dept: the
            contract's ``department.code``.

    Raises:
        SourceError: the path lies in the inbox but resolves outside ``inbox/<dept>/``.
    """
    raw = Path(declared).expanduser()
    if not raw.is_absolute() and base_dir is not None:
        raw = Path(base_dir) / raw
    raw = Path(os.path.abspath(raw))  # normalised, links not followed
    inbox = Path(os.path.abspath(inbox))
    if not raw.is_relative_to(inbox):
        return
    own = (inbox / dept).resolve()
    if not raw.resolve().is_relative_to(own):
        raise SourceError(
            f"leads out of {inbox / dept}/ (a link to another department's file?); a "
            "contract reads only its own department's inbox (只能读取本部门上传目录)",
            file=str(declared),
        )


def land(source: Path, *, dataset_code: str, landing_dir: Path, keyring: Keyring) -> LandedFile:
    """Copy ``source`` into ``landing_dir/<dataset_code>/`` encrypted, named by its SM3 digest.

    Args:
        source: the department file.
        dataset_code: the contract's code (信息资源代码).
        landing_dir: the home's landing zone.
        keyring: gives the dataset's current data key.

    Returns:
        The :class:`LandedFile`; ``newly_landed`` is False if those bytes were already there.

    Raises:
        SourceError: the source file is missing or unreadable, or lies in the keyring's
            ``keys_dir`` (names the file).
    """
    source = Path(source)
    if not source.is_file():
        raise SourceError("source file not found (源文件不存在)", file=str(source))
    if source.resolve().is_relative_to(Path(keyring.keys_dir).resolve()):
        # never parse the key store as data: its errors would quote key material
        raise SourceError(
            "a file of the key store cannot be a data source (密钥文件不可作为数据源)",
            file=str(source),
        )
    try:
        digest = sm3_file(source)
        size = source.stat().st_size
    except OSError as exc:
        raise SourceError(f"cannot read source file: {exc.strerror}", file=str(source)) from exc
    folder = landing_dir / dataset_code
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / f"{digest}{source.suffix.lower()}.sm4"
    if dst.exists():
        return LandedFile(dataset_code, source.name, digest, size, str(dst), newly_landed=False)
    encrypt_file(source, dst, key=keyring.current(dataset_code), digest=digest)
    return LandedFile(dataset_code, source.name, digest, size, str(dst), newly_landed=True)


def read_landed(landed: LandedFile, *, keyring: Keyring) -> bytes:
    """The plaintext bytes of a landed file, decrypted in memory (never written back in clear).

    Raises:
        privacy.DecryptionError: the landed copy was altered or the key is wrong.
    """
    return decrypt_file(
        Path(landed.path), keyring=keyring, dataset=landed.dataset_code, digest=landed.digest
    )
