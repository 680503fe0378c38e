"""Settings of the HTTP API deployable (接口服务配置).

:class:`ApiSettings` extends :class:`govdx.Settings` with the knobs of the service; like every
settings object it is built by the entry point (``govdx serve``, a test) and passed to
:func:`api.create_app`, never at import.

Environment variables (prefix ``GOVDX_``)::

    GOVDX_TOKEN_TTL_MINUTES          lifetime of an access token, minutes (default 15)
    GOVDX_LOGIN_FAILURES             failed logins allowed per user name and window ("5/5minute")
    GOVDX_LOGIN_FAILURES_PER_IP      failed logins allowed per client address ("30/5minute")
    GOVDX_SUBMIT_RATE                job submissions per user ("10/minute")
    GOVDX_RATE_LIMIT_STORAGE         ``limits`` storage URI: memory:// (per process) or
                                     redis://host:6379 (shared by all workers)
    GOVDX_MAX_UPLOAD_BYTES           largest request body / uploaded file, bytes (64 MiB)
    GOVDX_MAX_CONTRACT_BYTES         largest uploaded contract YAML, bytes (256 KiB)
    GOVDX_MAX_ROWS_PER_PAGE          rows per page of the owner's row route (1000)
"""

from __future__ import annotations

from pydantic import Field, field_validator

from govdx import Settings


class ApiSettings(Settings):
    """:class:`govdx.Settings` plus the API's limits (see the module doc for the variables).

    Attributes:
        token_ttl_minutes: access-token lifetime, minutes (1..1440).
        login_failures: ``limits`` rate string; failed logins per user name per window.
        login_failures_per_ip: the same per client IP address.
        submit_rate: sandbox job submissions per user per window.
        rate_limit_storage: ``limits`` storage URI (``memory://`` is per process).
        max_upload_bytes: largest request body or uploaded input file, bytes.
        max_contract_bytes: largest uploaded contract, bytes.
        max_rows_per_page: rows per page of ``GET /api/v1/catalog/datasets/{code}/rows``.
    """

    token_ttl_minutes: int = Field(default=15, ge=1, le=1440)
    login_failures: str = "5/5minute"
    login_failures_per_ip: str = "30/5minute"
    submit_rate: str = "10/minute"
    rate_limit_storage: str = "memory://"
    max_upload_bytes: int = Field(default=64 << 20, ge=1024)
    max_contract_bytes: int = Field(default=256 << 10, ge=1024)
    max_rows_per_page: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("login_failures", "login_failures_per_ip", "submit_rate")
    @classmethod
    def _rate(cls, v: str) -> str:
        from limits import parse

        try:
            parse(v)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a rate such as '10/minute' ({exc})") from exc
        return v

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiSettings:
        """An :class:`ApiSettings` carrying ``settings``' values (API knobs from the env)."""
        if isinstance(settings, ApiSettings):
            return settings
        return cls(**settings.model_dump())
