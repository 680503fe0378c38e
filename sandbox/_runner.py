"""The sandbox runner (沙箱执行器): one job, one spawned worker process, hard limits.

The parent (:func:`run_in_worker`) starts a ``multiprocessing`` *spawn* child, waits at most
the policy's time limit, kills it when it overruns, and reads the outcome from files in the
job's folder — never from logs::

    <GOVDX_HOME>/sandbox/<job id>/
        inputs/<name>           input files given at submit (e.g. the PSI request)
        result/worker.pid       pid of the running worker (for operators and tests)
        result/result.bin       the result bytes (written to a temp file, then renamed)
        result/meta.json        media type, SM3 digest, size, summary (after result.bin)
        result/error.json       the failure reason when the computation raised

The child sets ``RLIMIT_AS`` (address space) to the memory limit before importing anything
heavy, reads the pinned Delta version through ``pipelines.Lakehouse.read``, decrypts only the
protected columns the computation needs (each call audited before plaintext exists), runs the
computation, applies disclosure control and writes the result. A child that dies (signal,
non-zero exit, ``MemoryError``) or overruns yields a failed :class:`WorkerOutcome`; nothing
hangs.

Source: Python docs, ``multiprocessing`` contexts and start methods; ``resource.setrlimit``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sandbox._errors import RunError

RESULT_FILE = "result.bin"
META_FILE = "meta.json"
ERROR_FILE = "error.json"
PID_FILE = "worker.pid"
#: the whole traceback of an unexpected failure, for the operator only (0600; may hold values)
TRACEBACK_FILE = "traceback.txt"
#: Exit code of a worker whose computation raised (the reason is in error.json).
EXIT_COMPUTATION_ERROR = 3


@dataclass(frozen=True)
class WorkerTask:
    """Everything the worker needs, picklable (sent to the spawned child).

    Attributes:
        settings: ``Settings.model_dump()`` of the deployment (home, catalog URL, KEK).
        job_id, actor: the job and the user it runs for (audit actor of decryptions).
        dataset_code, dataset_name: catalog code and lakehouse table name.
        delta_version: the pinned Delta version.
        columns: columns the computation reads.
        contract: the contract as a JSON-ready dict.
        policy: the :class:`SandboxPolicy` as a dict.
        params: the computation's params (dict).
        computation: ``module:qualname`` of the computation class.
        inputs: input name → file path.
        out_dir: the job's ``result`` folder.
        owner: the requester's department owns the dataset (skips the row-value scan).
    """

    settings: dict[str, Any]
    job_id: str
    actor: str
    dataset_code: str
    dataset_name: str
    delta_version: int
    columns: list[str]
    contract: dict[str, Any]
    policy: dict[str, Any]
    params: dict[str, Any]
    computation: str
    inputs: dict[str, str] = field(default_factory=dict)
    out_dir: str = ""
    owner: bool = False


@dataclass(frozen=True)
class WorkerOutcome:
    """What came back from a worker.

    Attributes:
        ok: a result was written and passed disclosure control.
        reason: why not (time limit, memory, signal, exit code, computation error).
        exitcode: the child's exit code (negative = killed by that signal), None if unknown.
        digest: SM3 hex of result.bin. size: its size in bytes. media_type: its type.
        summary: the computation's small JSON facts.
    """

    ok: bool
    reason: str | None = None
    exitcode: int | None = None
    digest: str | None = None
    size: int | None = None
    media_type: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def run_in_worker(
    task: WorkerTask, *, time_limit_seconds: float, memory_limit_mb: int
) -> WorkerOutcome:
    """Run ``task`` in a spawned child under a time and an address-space limit.

    Args:
        task: the job's :class:`WorkerTask`.
        time_limit_seconds: wall-clock limit (seconds); the child is killed (SIGKILL) after it.
        memory_limit_mb: ``RLIMIT_AS`` of the child, MiB.

    Returns:
        The :class:`WorkerOutcome`; never raises for a failure of the child.
    """
    import multiprocessing as mp

    out = Path(task.out_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, mode=0o700)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(
        target=worker_main, args=(task, memory_limit_mb), name=f"govdx-sandbox-{task.job_id}"
    )
    # glibc reserves 64 MiB of address space per thread arena; cap the arenas so RLIMIT_AS
    # measures data, not the number of cores (read by the child's C runtime at start).
    saved = os.environ.get("MALLOC_ARENA_MAX")
    os.environ["MALLOC_ARENA_MAX"] = "2"
    try:
        proc.start()
    finally:
        if saved is None:
            os.environ.pop("MALLOC_ARENA_MAX", None)
        else:
            os.environ["MALLOC_ARENA_MAX"] = saved
    proc.join(time_limit_seconds)
    if proc.is_alive():
        proc.kill()
        proc.join(10)
        return WorkerOutcome(
            False,
            f"time limit of {time_limit_seconds:g} s exceeded; worker killed (运行超时)",
            proc.exitcode,
        )
    code = proc.exitcode
    proc.close()
    err = out / ERROR_FILE
    if err.exists():
        try:
            reason = json.loads(err.read_text(encoding="utf-8"))["reason"]
        except (ValueError, KeyError, OSError):
            reason = "worker failed and left an unreadable error file"
        return WorkerOutcome(False, reason, code)
    if code != 0:
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return WorkerOutcome(False, f"worker killed by signal {name} (工作进程被终止)", code)
        return WorkerOutcome(False, f"worker exited with code {code} (工作进程异常退出)", code)
    meta_path, result = out / META_FILE, out / RESULT_FILE
    if not (meta_path.exists() and result.exists()):
        return WorkerOutcome(False, "worker exited without writing a result", code)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    from privacy._digest import sm3_hex

    data = result.read_bytes()
    digest = sm3_hex(data)
    if digest != meta.get("digest"):
        return WorkerOutcome(False, "result file does not match its recorded SM3 digest", code)
    return WorkerOutcome(
        True, None, code, digest, len(data), meta["media_type"], meta.get("summary", {})
    )


# --- the child ------------------------------------------------------------------------------
def _limit_memory(memory_limit_mb: int) -> None:
    import resource

    limit = int(memory_limit_mb) << 20
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def worker_main(task: WorkerTask, memory_limit_mb: int) -> None:
    """Entry point of the spawned worker (see the module docstring). Exits non-zero on failure."""
    _limit_memory(memory_limit_mb)
    out = Path(task.out_dir)
    (out / PID_FILE).write_text(str(os.getpid()), encoding="ascii")
    try:
        data, media_type, summary = _compute(task)
    except MemoryError:
        _fail(out, f"memory limit of {memory_limit_mb} MiB exceeded (内存超限)")
    except Exception as exc:
        from govdx._errors import GovdxError

        if not isinstance(exc, GovdxError):  # the cause stays findable by the operator
            import traceback

            text = "".join(traceback.format_exception(exc))
            with contextlib.suppress(OSError):  # a full disk must not hide the failure itself
                _write_atomic(out / TRACEBACK_FILE, text.encode("utf-8"))
        _fail(out, _safe_reason(exc))
    from privacy._digest import sm3_hex

    _write_atomic(out / RESULT_FILE, data)
    meta = {
        "media_type": media_type,
        "digest": sm3_hex(data),
        "bytes": len(data),
        "summary": summary,
    }
    _write_atomic(out / META_FILE, json.dumps(meta, ensure_ascii=False).encode("utf-8"))


def _fail(out: Path, reason: str) -> None:
    try:
        _write_atomic(out / ERROR_FILE, json.dumps({"reason": reason}, ensure_ascii=False).encode())
    finally:
        os._exit(EXIT_COMPUTATION_ERROR)


def _safe_reason(exc: BaseException) -> str:
    """A failure reason that cannot carry cell values: our own errors keep their message
    (they name columns and keys, never values); any other exception gives only its type."""
    from govdx._errors import GovdxError

    if isinstance(exc, GovdxError):
        return f"{type(exc).__name__}: {exc}"
    return (
        f"computation failed with {type(exc).__name__} (details withheld from the requester: "
        f"they may hold data; the operator finds the traceback in the job folder, "
        f"result/{TRACEBACK_FILE})"
    )


def _cast_back(arr: Any, f: Any) -> Any:
    """Decrypted canonical strings back to the field's Arrow type."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = f.type.value
    target = {
        "string": pa.string(),
        "integer": pa.int64(),
        "decimal": pa.decimal128(f.precision, f.scale),
        "date": pa.date32(),
        "boolean": pa.bool_(),
    }.get(t)
    if target is None or target == pa.string():
        return arr
    return pc.cast(arr, target)


def _compute(task: WorkerTask) -> tuple[bytes, str, dict[str, Any]]:
    import pyarrow as pa

    import catalog
    from govdx import Contract, Settings
    from pipelines._lakehouse import Lakehouse
    from sandbox._audit_store import Auditor
    from sandbox._computations import RunContext, import_computation
    from sandbox._disclosure import assert_no_row_values
    from sandbox._policy import IDENTIFIER_ELEMENTS, SandboxPolicy

    settings = Settings(**task.settings)
    contract = Contract.model_validate(task.contract)
    policy = SandboxPolicy.model_validate(task.policy)
    comp = import_computation(task.computation)
    params = comp.Params.model_validate(task.params)
    factory = catalog.open_catalog(settings.catalog_db_url)
    auditor = Auditor(factory, settings.keys_dir)
    try:
        table = Lakehouse(settings.lakehouse_dir, settings.quarantine_dir).read(
            task.dataset_name, task.delta_version
        )
        keyring = None
        arrays: dict[str, pa.Array] = {}
        for name in task.columns:
            f = contract.field(name)
            col = table[name]
            key_id = (table.schema.field(name).metadata or {}).get(b"govdx.key_id")
            if f.protected or key_id is not None:
                from privacy import decrypt_column, keyring_from_settings

                if key_id is None:
                    raise RunError(f"protected column {name!r} has no govdx.key_id metadata")
                keyring = keyring or keyring_from_settings(settings)
                key = keyring.get(contract.code, key_id.decode())
                plain = decrypt_column(
                    col,
                    key=key,
                    dataset=contract.code,
                    column=name,
                    audit=auditor.callback(task.actor, f"job:{task.job_id}"),
                )
                arrays[name] = _cast_back(plain, f)
            else:
                arrays[name] = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        view = pa.table(arrays) if arrays else table.select([])
        inputs = {k: Path(v) for k, v in task.inputs.items()}
        cache_dir = settings.home / "sandbox" / "cache"
        ctx = RunContext(
            view,
            params,
            policy,
            contract,
            inputs,
            task.owner,
            task.delta_version,
            cache_dir,
            audit=auditor.callback(task.actor, f"job:{task.job_id}"),
        )
        output = comp.run(ctx)
        if output.table is not None and not task.owner:
            checked = [
                f.name
                for f in contract.fields
                if (f.element in IDENTIFIER_ELEMENTS or contract.primary_key == [f.name])
                and not f.protected
                and f.name in table.column_names
            ]
            assert_no_row_values(output.table, table, checked)
            tokens = [
                f
                for f in contract.fields
                if f.element in IDENTIFIER_ELEMENTS
                and f.protected
                and f"{f.name}_token" in table.column_names
            ]
            if tokens:
                _check_tokens(output.table, table, tokens, settings)
        return output.data, output.media_type, output.summary
    finally:
        factory.kw["bind"].dispose()


def _check_tokens(output: Any, table: Any, fields: list[Any], settings: Any) -> None:
    """Scan an output for values of protected identifier columns without decrypting them:
    tokenise every output cell under the field's token key and look it up in ``<name>_token``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from privacy import keyring_from_settings, token_column
    from sandbox._disclosure import assert_no_row_values

    keyring = keyring_from_settings(settings)
    for f in fields:
        key = keyring.token_key(f.element)
        cols = {
            name: token_column(pc.cast(output[name], pa.string()), key=key, domain=f.element)
            for name in output.column_names
            if not pa.types.is_nested(output[name].type)
            and not pa.types.is_binary(output[name].type)
        }
        if cols:
            assert_no_row_values(pa.table(cols), table, [f"{f.name}_token"])
