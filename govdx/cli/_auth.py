"""``govdx users passwd NAME``: set a user's API password (Argon2id hash in ``users``).

Registered on the ``users`` group of :mod:`govdx.cli._sandbox` when this module is imported::

    govdx users add bank --role requester
    govdx users passwd bank                      # prompts twice, input hidden
    printf '%s\\n' "$PW" | govdx users passwd bank --password-stdin
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from govdx import GovdxError
from govdx.cli._common import console, fail, get_settings
from govdx.cli._sandbox import users_app


@users_app.command("passwd")
def users_passwd_command(
    name: Annotated[str, typer.Argument(help="Login name (用户名).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first stdin line.")
    ] = False,
) -> None:
    """Set the password a user logs in to the HTTP API with (设置接口登录口令).

    At least 8 characters; 12 when GOVDX_ENV=production (NIST SP 800-63B §5.1.1.2).
    """
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password (口令)", hide_input=True, confirmation_prompt=True)
    try:
        import catalog
        from api.crud import set_password

        settings = get_settings()
        settings.ensure_home()
        with catalog.session_scope(settings.catalog_db_url) as session:
            set_password(session=session, name=name, password=password, env=settings.env)
        from sandbox import Auditor

        factory = catalog.open_catalog(settings.catalog_db_url)
        try:
            Auditor(factory, settings.keys_dir).record("cli", "user.passwd", name, {})
        finally:
            factory.kw["bind"].dispose()
    except GovdxError as exc:
        fail(exc)
    console.print(f"password of {name!r} set (口令已设置)")
