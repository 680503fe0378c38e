"""The demo scenario: enterprise credit loans (企业信用贷款 / 信易贷), seeded synthetic data.

``write_credit_demo(workdir)`` writes the department files into ``workdir/data`` and their
contracts into ``workdir``; the bank's applicant list stays on the requester side.
"""

from govdx.demo._generate import (
    CONTRACTS_DIR,
    DEFECT_RATES,
    DemoError,
    DemoFiles,
    generate_credit_demo,
    write_credit_demo,
)

__all__ = [
    "CONTRACTS_DIR",
    "DEFECT_RATES",
    "DemoError",
    "DemoFiles",
    "generate_credit_demo",
    "write_credit_demo",
]
