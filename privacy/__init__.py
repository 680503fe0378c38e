"""privacy — symmetric cryptography of govdx (国密对称密码): SM4 column encryption, envelope keys,
HMAC-SM3 join tokens and SM3 digests, all through OpenSSL (``cryptography``/``hashlib``); also
landed-file encryption (``encrypt_file``/``decrypt_file``) and display masking
(``mask_array``/``mask_value``).

Error tree::

    govdx.GovdxRuntimeError
    └── PrivacyError                  root of this package
        ├── DecryptionError           tampered, swapped, truncated cell or wrong key (密文校验失败)
        └── KeyManagementError        key creation, storage, wrap/unwrap failures (密钥管理错误)
            └── KeyConfigError        bad key configuration; also a govdx.DefinitionError

Formats and the reasons behind them: docs/crypto.md.
"""

from privacy._audit_chain import (
    GENESIS_HASH,
    AuditChain,
    AuditEntry,
    AuditError,
    AuditStore,
    Checkpoint,
    InMemoryAuditStore,
    VerifyReport,
)
from privacy._digest import sm3_file, sm3_hex
from privacy._errors import DecryptionError, KeyConfigError, KeyManagementError, PrivacyError
from privacy._files import decrypt_file, encrypt_file
from privacy._keys import DataKey, Keyring, Kms, LocalKms, keyring_from_settings
from privacy._masking import mask_array, mask_value
from privacy._paillier import (
    EncryptedVector,
    HeDecryptionError,
    HeError,
    HeKeyError,
    HeValueError,
    HomomorphicScheme,
    KeyPack,
    ObfuscatorPool,
    PhePaillier,
    PrivateKey,
    PublicKey,
    SlotLayout,
)
from privacy._psi import (
    PSI_ELEMENTS,
    PSI_FORMAT_VERSION,
    NormalizedSet,
    PsiClientSession,
    PsiError,
    PsiOutcome,
    PsiPolicyError,
    PsiRequest,
    PsiResponse,
    normalize_identifiers,
    psi_bucket_of,
    psi_serve,
)
from privacy._psi_spark import psi_serve_spark
from privacy._sm2 import (
    DEFAULT_SIGNER_ID,
    SignatureError,
    Sm2KeyPair,
    generate_sm2_keypair,
    load_or_create_signing_key,
    sm2_sign,
    sm2_verify,
    sm2_z_a,
)
from privacy._sm4 import (
    CELL_OVERHEAD_BYTES,
    FORMAT_VERSION,
    GROUP_CELLS,
    GROUP_HEADER_BYTES,
    decrypt_column,
    encrypt_column,
    sm4_block_encrypt,
)
from privacy._tokens import TOKEN_HEX_CHARS, normalise_identifiers, token_column

__all__ = [
    "CELL_OVERHEAD_BYTES",
    "DEFAULT_SIGNER_ID",
    "FORMAT_VERSION",
    "GENESIS_HASH",
    "GROUP_CELLS",
    "GROUP_HEADER_BYTES",
    "PSI_ELEMENTS",
    "PSI_FORMAT_VERSION",
    "TOKEN_HEX_CHARS",
    "AuditChain",
    "AuditEntry",
    "AuditError",
    "AuditStore",
    "Checkpoint",
    "DataKey",
    "DecryptionError",
    "EncryptedVector",
    "HeDecryptionError",
    "HeError",
    "HeKeyError",
    "HeValueError",
    "HomomorphicScheme",
    "InMemoryAuditStore",
    "KeyConfigError",
    "KeyManagementError",
    "KeyPack",
    "Keyring",
    "Kms",
    "LocalKms",
    "NormalizedSet",
    "ObfuscatorPool",
    "PhePaillier",
    "PrivacyError",
    "PrivateKey",
    "PsiClientSession",
    "PsiError",
    "PsiOutcome",
    "PsiPolicyError",
    "PsiRequest",
    "PsiResponse",
    "PublicKey",
    "SignatureError",
    "SlotLayout",
    "Sm2KeyPair",
    "VerifyReport",
    "decrypt_column",
    "decrypt_file",
    "encrypt_column",
    "encrypt_file",
    "generate_sm2_keypair",
    "keyring_from_settings",
    "load_or_create_signing_key",
    "mask_array",
    "mask_value",
    "normalise_identifiers",
    "normalize_identifiers",
    "psi_bucket_of",
    "psi_serve",
    "psi_serve_spark",
    "sm2_sign",
    "sm2_verify",
    "sm2_z_a",
    "sm3_file",
    "sm3_hex",
    "sm4_block_encrypt",
    "token_column",
]
