"""``govdx client``: the requester's side of sandbox protocols, run on the requester's machine.

PSI (隐私求交)::

    govdx client psi request --ids applicants.csv --column uscc --out req.bin --state psi.state
    # submit a job with inputs: {request: req.bin}; after approval and the run:
    govdx sandbox result JOB_ID --out response.bin
    govdx client psi finish --result response.bin --state psi.state

PSI-sum and he_cohort (docs/he.md)::

    govdx client psi-sum request --ids applicants.csv --column uscc --out join.bin --state s.json
    govdx client psi-sum finish --result join-result.bin --state s.json --out unmask.bin
    govdx client psi-sum reveal --result reveal.bin --state s.json
    govdx client he-cohort request --ids applicants.csv --column uscc --out J.bin --state c.json
    govdx client he-cohort reply --result offer.bin --state c.json --out D.bin

The identifiers never leave this machine in plaintext: the request holds them blinded by a
secret key that stays in the state file (mode 0600).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import typer

from govdx import GovdxError
from govdx.cli._common import console, fail, print_json

client_app = typer.Typer(
    help="Requester-side protocol steps (需求方本地计算).", no_args_is_help=True
)
psi_app = typer.Typer(
    help="PSI client (隐私求交客户端): create a request, finish with the sandbox's response.",
    no_args_is_help=True,
)
client_app.add_typer(psi_app, name="psi")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (UTF-8) for scripts.")]


@client_app.callback()
def _client_group() -> None:
    """Requester-side steps (需求方本地计算)."""


@psi_app.callback()
def _psi_group() -> None:
    """PSI client (隐私求交客户端)."""


def _read_ids(path: Path, column: str) -> list[str | None]:
    """The ``column`` of a CSV file (header row, UTF-8), as strings; read with pyarrow.csv."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        table = pcsv.read_csv(
            path,
            convert_options=pcsv.ConvertOptions(
                include_columns=[column], column_types={column: pa.string()}
            ),
        )
    except FileNotFoundError as exc:
        raise GovdxError(f"{path}: file not found") from exc
    except (pa.ArrowInvalid, KeyError) as exc:
        raise GovdxError(f"{path}: cannot read column {column!r}: {exc}") from exc
    return table[column].to_pylist()


@psi_app.command("request")
def request_command(
    ids: Annotated[
        Path, typer.Option("--ids", help="CSV file with a header row holding the identifiers.")
    ],
    column: Annotated[str, typer.Option("--column", help="Column of --ids with the identifiers.")],
    out: Annotated[Path, typer.Option("--out", help="Request file to submit with the job.")],
    state: Annotated[
        Path, typer.Option("--state", help="Local session file (0600; keep it secret).")
    ],
    element: Annotated[
        str, typer.Option("--element", help="uscc | resident_id | identifier")
    ] = "uscc",
    reveal: Annotated[
        bool, typer.Option("--reveal", help="Ask for the intersection, not only its size.")
    ] = False,
    buckets: Annotated[
        int,
        typer.Option(
            "--buckets",
            min=1,
            max=16,
            help="Bucket count (1..16); the govdx sandbox answers 1, the default.",
        ),
    ] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Create a PSI request and the local state file."""
    try:
        from privacy._psi import PsiClientSession

        values = _read_ids(ids, column)
        session, request = PsiClientSession.create(
            values, reveal_intersection=reveal, buckets=buckets, element=element
        )
        if request.size == 0:
            fail(
                f"{ids}: no valid {element} identifier in column {column!r} "
                f"({len(session.rejected)} rejected): nothing to ask (没有有效标识)"
            )
            return
        out.write_bytes(request.to_bytes())
        session.save(state)
    except GovdxError as exc:
        fail(exc)
    rejected = list(getattr(session, "rejected", []) or [])
    doc = {
        "request": str(out),
        "state": str(state),
        "items": request.size,
        "rejected": len(rejected),
        "rejected_rows": [i for i, _ in rejected[:20]],
        "reveal": reveal,
        "element": element,
        "max_items_hint": request.size,
    }
    if as_json:
        print_json(doc)
    else:
        console.print(
            f"request with {request.size} items written to {out} "
            f"({len(rejected)} malformed identifiers rejected); state in {state}. "
            f"Submit a job with computation.params.max_items ≥ {request.size} and "
            f"inputs: {{request: {out.name}}}."
        )


@psi_app.command("finish")
def finish_command(
    result: Annotated[
        Path, typer.Option("--result", help="The sandbox's response (sandbox result --out).")
    ],
    state: Annotated[Path, typer.Option("--state", help="The state file of `psi request`.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the intersection (one id a line).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Finish PSI locally: the intersection cardinality (交集数量), or its items in reveal mode."""
    try:
        from privacy._psi import PsiClientSession, PsiResponse

        session = PsiClientSession.load(state)
        try:
            data = result.read_bytes()
        except OSError as exc:
            raise GovdxError(f"{result}: cannot read the response: {exc.strerror}") from exc
        outcome = session.finish(PsiResponse.from_bytes(data))
    except GovdxError as exc:
        fail(exc)
    doc: dict = {"cardinality": outcome.cardinality}
    if outcome.intersection is not None:
        if out is not None:
            out.write_text("".join(f"{x}\n" for x in outcome.intersection), encoding="utf-8")
            doc["out"] = str(out)
        else:
            doc["intersection"] = outcome.intersection
    if as_json:
        print_json(doc)
    else:
        console.print(f"intersection cardinality (交集数量): {outcome.cardinality}")
        if "intersection" in doc:
            for x in doc["intersection"]:
                console.print(x)


# --- homomorphic sums (docs/he.md) ---------------------------------------------------------------
psi_sum_app = typer.Typer(
    help="PSI-sum client (隐私求交求和): request, finish (cardinality + unmask request), reveal.",
    no_args_is_help=True,
)
client_app.add_typer(psi_sum_app, name="psi-sum")


@psi_sum_app.callback()
def _psi_sum_group() -> None:
    """PSI-sum client (隐私求交求和客户端)."""


@client_app.command("keygen")
def keygen_command(
    out: Annotated[Path, typer.Option("--out", help="Private key file (written 0600).")],
    public_out: Annotated[
        Path, typer.Option("--public-out", help="Public key JSON (goes into he_sum params).")
    ],
    bits: Annotated[int, typer.Option("--bits", help="Modulus bits: 2048 or 3072.")] = 2048,
    as_json: JsonOpt = False,
) -> None:
    """Generate a Paillier key pair (同态密钥对); the private key never leaves this machine."""
    try:
        from privacy._paillier import default_scheme

        pk, sk = default_scheme().keygen(bits)
        sk.save(out)
        public_out.write_text(pk.to_json(), encoding="utf-8")
    except GovdxError as exc:
        fail(exc)
    doc = {
        "private_key": str(out),
        "public_key": str(public_out),
        "bits": pk.bits,
        "fingerprint": pk.fingerprint,
    }
    if as_json:
        print_json(doc)
    else:
        console.print(f"key {pk.fingerprint} ({pk.bits} bits): private {out}, public {public_out}")


@client_app.command("decrypt")
def decrypt_command(
    result: Annotated[
        Path, typer.Option("--result", help="The he_sum result (sandbox result --out).")
    ],
    key: Annotated[Path, typer.Option("--key", help="Private key file of `client keygen`.")],
    as_json: JsonOpt = False,
) -> None:
    """Decrypt grouped totals of an he_sum result (解密分组合计), exact integers.

    An he_cohort sum on a dataset with sandbox.dp holds noisy sums and noisy unit counts n;
    their differential-privacy terms (ε, noise scale, interval half-width) are printed too.
    """
    try:
        from privacy._paillier import PrivateKey
        from sandbox._he import decrypt_he_sum

        sk = PrivateKey.load(key)
        data = read_result(result)
        try:
            out = decrypt_he_sum(data, sk)
        except ValueError as exc:
            raise GovdxError(f"{result}: {exc}") from exc
    except GovdxError as exc:
        fail(exc)
    if as_json:
        print_json(out)
        return
    console.print(
        f"sums in units of 10^-{out['scale']} {out['unit'] or ''} "
        f"({out['suppressed_groups']} groups under k suppressed)"
    )
    console.print("\t".join(out["columns"]))
    for row in out["rows"]:
        console.print("\t".join(str(v) for v in row))
    dp = out.get("dp")
    if dp:  # an he_cohort sum under sandbox.dp: noisy sums and unit counts
        s, c = dp["sum"], dp["count"]
        level = f"{float(dp['confidence']):.0%}"
        say = functools.partial(console.print, soft_wrap=True)  # one line each, never wrapped
        say(
            f"differential privacy (差分隐私): {dp['mechanism']}, ε = {dp['epsilon']} "
            f"(sums {s['epsilon']}, counts {c['epsilon']}), δ = {dp['delta']}"
        )
        say(
            f"  sum ± {s['ci_halfwidth']} ({level} per group; noise scale {s['scale']}, "
            f"sensitivity {s['sensitivity']}, units of 10^-{dp['value_scale']})"
        )
        say(
            f"  n ± {c['ci_halfwidth']} ({level} per group; noise scale {c['scale']}; "
            f"n counts {dp['privacy_unit']} units)"
        )
        say(
            f"  each unit's total per group clamped to {dp['bounds']}, at most "
            f"{dp['max_groups_per_unit']} group(s) per unit; groups: {dp['groups_from']}"
        )


@psi_sum_app.command("request")
def psi_sum_request_command(
    ids: Annotated[Path, typer.Option("--ids", help="CSV file with a header row.")],
    column: Annotated[str, typer.Option("--column", help="Column of --ids with the identifiers.")],
    out: Annotated[Path, typer.Option("--out", help="Join request to submit (inputs.request).")],
    state: Annotated[Path, typer.Option("--state", help="Local state file (0600; keep it).")],
    element: Annotated[
        str, typer.Option("--element", help="uscc | resident_id | identifier")
    ] = "uscc",
    as_json: JsonOpt = False,
) -> None:
    """Blind the identifiers (H(x)^a) for a psi_sum join job."""
    from privacy._blind import PiSumClient

    _blinded_request(
        lambda items: _to_bytes(PiSumClient.create(items, element=element, processes=2)),
        ids, column, out, state, as_json, what="join request", job="psi_sum with phase: join",
    )  # fmt: skip


def _to_bytes(created: tuple[Any, Any, list[Any]]) -> tuple[Any, bytes, list[Any]]:
    client, request, rejected = created
    return client, request.to_bytes(), rejected


def _blinded_request(
    create: Any,
    ids: Path,
    column: str,
    out: Path,
    state: Path,
    as_json: bool,
    *,
    what: str,
    job: str,
) -> None:
    """Shared body of ``psi-sum request`` and ``he-cohort request``: read the identifiers,
    ``create(items) -> (client, request bytes, rejected)``, write the request and the 0600
    state, print what to submit next."""
    try:
        client, request, rejected = create(_read_ids(ids, column))
        if client.items == 0:
            first = f"; first: row {rejected[0][0] + 2}: {rejected[0][1]}" if rejected else ""
            fail(
                f"{ids}: no valid identifier in column {column!r} ({len(rejected)} rejected"
                f"{first}); nothing written (没有有效标识)"
            )
        out.write_bytes(request)
        client.save(state)
    except GovdxError as exc:
        fail(exc)
    doc = {
        "request": str(out),
        "state": str(state),
        "items": client.items,
        "rejected": len(rejected),
    }
    if as_json:
        print_json(doc)
    else:
        console.print(
            f"{what} with {client.items} items written to {out} ({len(rejected)} rejected); "
            f"submit {job}, max_items ≥ {client.items}"
        )


@psi_sum_app.command("finish")
def psi_sum_finish_command(
    result: Annotated[Path, typer.Option("--result", help="The join job's result.")],
    state: Annotated[Path, typer.Option("--state", help="The state file of `psi-sum request`.")],
    out: Annotated[Path, typer.Option("--out", help="Unmask request for the reveal job.")],
    as_json: JsonOpt = False,
) -> None:
    """Intersect and add the matching encrypted values: cardinality + the masked sum request."""
    try:
        from privacy._blind import PiSumClient

        client = PiSumClient.load(state)
        data = read_result(result)
        out.write_bytes(client.finish(data, processes=2))
        client.save(state)
    except GovdxError as exc:
        fail(exc)
    made = len(client._s.get("unmask_sm3", []))
    doc = {"cardinality": client.cardinality, "unmask_request": str(out), "unmask_requests": made}
    if as_json:
        print_json(doc)
    else:
        console.print(
            f"intersection cardinality (交集数量): {client.cardinality}; submit psi_sum with "
            f"phase: reveal, join_job: <join job id>, inputs: {{request: {out.name}}}"
        )
        if made > 1:
            console.print(
                f"  finished again (再次完成): same mask ρ, so any of the {made} unmask requests "
                "this state made reveals; one reveal per join"
            )


@psi_sum_app.command("reveal")
def psi_sum_reveal_command(
    result: Annotated[Path, typer.Option("--result", help="The reveal job's result.")],
    state: Annotated[Path, typer.Option("--state", help="The state file (after finish).")],
    as_json: JsonOpt = False,
) -> None:
    """Remove the mask: the sum of the values over the intersection (交集求和)."""
    try:
        from privacy._blind import PiSumClient

        client = PiSumClient.load(state)
        data = read_result(result)
        total = client.reveal(data)
    except GovdxError as exc:
        fail(exc)
    doc = {
        "cardinality": client.cardinality,
        "sum": total,
        "scale": client._s.get("scale"),
        "unit": client._s.get("unit"),
        "dp": _noise_terms(data),
    }
    if as_json:
        print_json(doc)
    else:
        console.print(
            f"intersection cardinality (交集数量): {client.cardinality}; sum (交集求和): {total} "
            f"× 10^-{doc['scale']} {doc['unit'] or ''}"
        )
        if doc["dp"]:
            dp = doc["dp"]
            console.print(
                f"  differential privacy (差分隐私): {dp['mechanism']}, ε = {dp['epsilon']}, "
                f"noise scale {dp['scale']}, {float(dp['confidence']):.0%} CI ± "
                f"{dp['ci_halfwidth']} (units of 10^-{dp['value_scale']}); each taxpayer's "
                f"total clamped to {dp['bounds']}"
            )


# --- he_cohort (docs/he.md "Cohorts: why and how") -------------------------------------------------
he_cohort_app = typer.Typer(
    help="he_cohort client (隐私群体求和客户端): request (J), reply to the offer (D).",
    no_args_is_help=True,
)
client_app.add_typer(he_cohort_app, name="he-cohort")


@he_cohort_app.callback()
def _he_cohort_group() -> None:
    """he_cohort client (隐私群体求和客户端)."""


@he_cohort_app.command("request")
def he_cohort_request_command(
    ids: Annotated[Path, typer.Option("--ids", help="CSV file with a header row.")],
    column: Annotated[str, typer.Option("--column", help="Column of --ids with the identifiers.")],
    out: Annotated[Path, typer.Option("--out", help="Request J for the offer job.")],
    state: Annotated[Path, typer.Option("--state", help="Local state file (0600; keep it).")],
    element: Annotated[
        str, typer.Option("--element", help="uscc | resident_id | identifier")
    ] = "uscc",
    as_json: JsonOpt = False,
) -> None:
    """Blind the identifiers (H(x)^a) for an he_cohort offer job (phase: offer)."""
    from sandbox._he import CohortClient

    _blinded_request(
        lambda items: CohortClient.create(items, element=element, processes=2),
        ids, column, out, state, as_json, what="he_cohort request", job="he_cohort with phase: offer",
    )  # fmt: skip


@he_cohort_app.command("reply")
def he_cohort_reply_command(
    result: Annotated[Path, typer.Option("--result", help="The offer job's result (C).")],
    state: Annotated[Path, typer.Option("--state", help="The state file of `he-cohort request`.")],
    out: Annotated[Path, typer.Option("--out", help="Reply D for the sum job.")],
    as_json: JsonOpt = False,
) -> None:
    """Re-blind the department's offer with the saved key: the sum job's request (D)."""
    try:
        from sandbox._he import CohortClient

        client = CohortClient.load(state)
        out.write_bytes(client.reply(read_result(result), processes=2))
        client.save(state)
    except GovdxError as exc:
        fail(exc)
    doc = {"reply": str(out), "offered": client._s.get("offered")}
    if as_json:
        print_json(doc)
    else:
        console.print(
            f"reply to an offer of {doc['offered']} identifiers written to {out}; submit "
            f"he_cohort with phase: sum, offer_job: <offer job id>, inputs: {{request: {out.name}}}"
        )


def _noise_terms(data: bytes) -> dict | None:
    """The DP terms a reveal result carries (None for a result without them)."""
    try:
        from sandbox._he import psi_sum_noise

        return psi_sum_noise(data)
    except (ValueError, GovdxError):
        return None


def read_result(path: Path) -> bytes:
    """The bytes of a released job result file.

    Raises:
        GovdxError: the file cannot be read (names it and the OS reason).
    """
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GovdxError(f"{path}: cannot read the result: {exc.strerror}") from exc
