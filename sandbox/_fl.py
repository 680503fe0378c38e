"""Federated training jobs on Flower (联邦学习): the ``fl_train`` computation and its launcher.

A model learns from several parties' data that never leaves them (数据不出域). The embedded
default runs the whole Flower deployment runtime on loopback inside the sandbox worker::

    worker (this module)                      <job dir>/fl/
      ├─ flower-superlink  (platform)           bin/           wrappers of the Flower CLIs
      │    └─ flower-superexec → flwr-serverapp  app/           the FAB: pyproject + app code
      └─ flower-supernode × N  (one per party)  party_<i>/     party.parquet (its rows only)
           └─ flower-superexec → flwr-clientapp  result.json    the ServerApp's result

1. :func:`partition_parties` cuts the job's table into parties (by city: the first 4 digits of
   the region code, or a column naming the department) and writes each party's rows, already
   in model features, to its own folder — the only file that party's process opens.
2. :class:`FlowerDeployment` starts a SuperLink and one SuperNode per party on 127.0.0.1 (free
   ports, ``--insecure`` on loopback only), submits the FAB through the Control API (what
   ``flwr run`` does) and waits, bounded, for the ServerApp's ``result.json``; every process it
   started is killed in ``finally`` (and, via ``PR_SET_PDEATHSIG``, when the worker dies).
3. The ServerApp/ClientApp code is :mod:`sandbox._fl_apps` (FedAvg over SecAgg+), shipped
   unchanged as the FAB's ``govdx_fl_app.py``: the same code a real deployment runs, where each
   department starts ``flower-supernode --superlink <platform>:9092 --node-config
   'party="SWJ" data-dir="/srv/fl"'`` at home (docs/federated.md).

Why the wrappers in ``bin/``: the pinned grpcio-health-checking 1.73.1 ships protobuf gencode
6.31.0, while openmined-psi pins the protobuf runtime to 6.30.2; protobuf refuses that pairing at
import (``VersionError``) although the module only defines two messages. The wrappers disable
that import-time version guard before starting Flower's entry points (the same functions as the
console scripts) and set ``PR_SET_PDEATHSIG``. Fix at the root: a protobuf ≥ 6.31 runtime (needs
a newer openmined-psi) or a grpcio-health-checking built with older gencode.

Source: Flower 1.32 docs "Run Flower using the Deployment Engine", "Secure Aggregation
Protocols"; ``flwr.server.app.run_superlink``, ``flwr.supernode.cli.flower_supernode``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from govdx._contract import Contract
from govdx._errors import ContractError
from sandbox._computations import Computation, Output, RunContext, register_computation
from sandbox._errors import RunError

#: Flower entry points the wrappers start (console-script name → module:function).
ENTRY_POINTS = {
    "flower-superlink": "flwr.server.app:run_superlink",
    "flower-supernode": "flwr.supernode.cli:flower_supernode",
    "flower-superexec": "flwr.supercore.cli:flower_superexec",
    "flwr-serverapp": "flwr.server.serverapp:flwr_serverapp",
    "flwr-clientapp": "flwr.supernode.cli:flwr_clientapp",
}
#: Flower modules whose fixed polling sleeps the wrappers shorten on loopback (their ``time``).
POLLING_MODULES = (
    "flwr.supernode.start_client_internal",
    "flwr.supercore.superexec.run_superexec",
    "flwr.superlink.grid.grpc_grid",
)
#: Poll interval of the embedded (loopback) deployment, seconds.
LOOPBACK_POLL_SECONDS = 0.1
APP_MODULE = "govdx_fl_app"
RESULT_FILE = "result.json"

_WRAPPER = """#!{python}
# govdx: start a Flower entry point (see sandbox/_fl.py for why this wrapper exists)
import ctypes, importlib, signal, sys, warnings
try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
except Exception:
    pass
import google.protobuf.runtime_version as _rv
_rv.ValidateProtobufRuntimeVersion = lambda *a, **k: None
warnings.filterwarnings("ignore", message="Protobuf gencode")
import os, time as _time
_POLL = float(os.environ.get("GOVDX_FL_POLL_SECONDS", "0") or 0)
if _POLL > 0:  # loopback: poll every _POLL s instead of Flower's fixed 1-3 s sleeps
    class _Fast:
        def __getattr__(self, k):
            return getattr(_time, k)
        @staticmethod
        def sleep(s):
            _time.sleep(min(s, _POLL))
    for _m in {patched!r}:
        try:
            importlib.import_module(_m).time = _Fast()
        except Exception:
            pass
sys.argv[0] = {name!r}
_mod, _fn = {target!r}.split(":")
sys.exit(getattr(importlib.import_module(_mod), _fn)())
"""


class FlError(RunError):
    """A federated run could not start or ended without a model (reason in the message)."""


# --- processes --------------------------------------------------------------------------------
def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound then released; the caller binds it next)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes], what: str) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FlError(f"{what} exited with code {proc.returncode} before listening")
        with closing(socket.socket()) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise FlError(f"{what} did not listen on 127.0.0.1:{port} in time")


def write_wrappers(bin_dir: Path) -> Path:
    """Write the Flower entry-point wrappers (see the module docstring) into ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, target in ENTRY_POINTS.items():
        p = bin_dir / name
        p.write_text(
            _WRAPPER.format(
                python=sys.executable, name=name, target=target, patched=POLLING_MODULES
            ),
            encoding="utf-8",
        )
        p.chmod(0o700)
    return bin_dir


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)


def write_fab_dir(app_dir: Path, run_config: dict[str, Any]) -> Path:
    """Write the Flower App folder (the FAB's content): pyproject.toml + ``govdx_fl_app.py``.

    Args:
        app_dir: folder to (re)create.
        run_config: ``[tool.flwr.app.config]`` of the run (str/int/float/bool values).
    """
    shutil.rmtree(app_dir, ignore_errors=True)
    app_dir.mkdir(parents=True)
    src = Path(__file__).with_name("_fl_apps.py")
    shutil.copyfile(src, app_dir / f"{APP_MODULE}.py")
    lines = [
        "[build-system]",
        'requires = ["hatchling"]',
        'build-backend = "hatchling.build"',
        "",
        "[project]",
        'name = "govdx-fl"',
        'version = "1.0.0"',
        'description = "govdx federated logistic regression (FedAvg over SecAgg+)"',
        'dependencies = ["flwr>=1.20", "numpy", "pyarrow", "scipy"]',
        "",
        "[tool.hatch.build.targets.wheel]",
        'packages = ["."]',
        "",
        "[tool.flwr.app]",
        'publisher = "govdx"',
        "",
        "[tool.flwr.app.components]",
        f'serverapp = "{APP_MODULE}:server_app"',
        f'clientapp = "{APP_MODULE}:client_app"',
        "",
        "[tool.flwr.app.config]",
        *[f'"{k}" = {_toml_value(v)}' for k, v in run_config.items()],
        "",
    ]
    (app_dir / "pyproject.toml").write_text("\n".join(lines), encoding="utf-8")
    return app_dir


@dataclass
class FlowerDeployment:
    """A SuperLink and one SuperNode per party on loopback, for one run (context manager).

    Attributes:
        work_dir: folder for wrappers, the FAB, logs and the result.
        parties: party name → its data folder (holding ``party.parquet``).
        env_per_party: extra environment of a party's SuperNode (and so of its ClientApp).
        start_timeout: seconds to wait for each process to listen.
    """

    work_dir: Path
    parties: dict[str, Path]
    env_per_party: dict[str, dict[str, str]] = field(default_factory=dict)
    start_timeout: float = 60.0
    poll_seconds: float = LOOPBACK_POLL_SECONDS
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    control_port: int = 0
    fleet_port: int = 0

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{self.work_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["FLWR_HOME"] = str(self.work_dir / "flwr_home")
        env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
        env["FLWR_TELEMETRY_ENABLED"] = "0"
        env["PYTHONWARNINGS"] = "ignore"
        env["GOVDX_FL_POLL_SECONDS"] = str(self.poll_seconds)
        env.pop("GOVDX_FL_OPEN_LOG", None)
        env.update(extra or {})
        return env

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        logs = self.work_dir / "logs"
        logs.mkdir(exist_ok=True)
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        try:
            proc = subprocess.Popen(
                [str(self.work_dir / "bin" / argv[0]), *argv[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.work_dir,
                start_new_session=True,
            )
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def start(self) -> FlowerDeployment:
        """Start the SuperLink, then the SuperNodes; returns self.

        Raises:
            FlError: a process exits or does not listen within ``start_timeout``.
        """
        write_wrappers(self.work_dir / "bin")
        (self.work_dir / "flwr_home").mkdir(exist_ok=True)
        self.control_port, self.fleet_port, appio = free_port(), free_port(), free_port()
        link = self._start(
            "superlink",
            [
                "flower-superlink",
                "--insecure",
                "--isolation",
                "subprocess",
                "--disable-runtime-dependency-installation",
                "--control-api-address",
                f"127.0.0.1:{self.control_port}",
                "--fleet-api-address",
                f"127.0.0.1:{self.fleet_port}",
                "--serverappio-api-address",
                f"127.0.0.1:{appio}",
            ],
            self._env(),
        )
        deadline = time.monotonic() + self.start_timeout
        for port in (self.control_port, self.fleet_port, appio):
            _wait_port(port, deadline, link, "flower-superlink")
        for i, (party, data_dir) in enumerate(self.parties.items()):
            port = free_port()
            node_config = f'party="{party}" data-dir="{data_dir}" index={i}'
            extra = self.env_per_party.get(party, {})
            if "record-dir" in extra:
                node_config += f' record-dir="{extra["record-dir"]}"'
            proc = self._start(
                f"supernode_{party}",
                [
                    "flower-supernode",
                    "--insecure",
                    "--superlink",
                    f"127.0.0.1:{self.fleet_port}",
                    "--clientappio-api-address",
                    f"127.0.0.1:{port}",
                    "--node-config",
                    node_config,
                    "--max-retries",
                    "3",
                    "--max-wait-time",
                    "30",
                ],
                self._env({k: v for k, v in extra.items() if k != "record-dir"}),
            )
            _wait_port(port, time.monotonic() + self.start_timeout, proc, f"supernode {party}")
        return self

    def submit(self, app_dir: Path) -> int:
        """Build the FAB from ``app_dir`` and start a run through the Control API (as
        ``flwr run`` does). Returns the run id.

        Raises:
            FlError: the SuperLink refused the run.
        """
        import grpc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            import hashlib

            from flwr.cli.build import build_fab_from_disk
            from flwr.common.serde import fab_to_proto, user_config_to_proto
            from flwr.proto.control_pb2 import StartRunRequest
            from flwr.proto.control_pb2_grpc import ControlStub
            from flwr.supercore.fab import Fab

        fab_bytes = build_fab_from_disk(app_dir)
        fab = Fab(hashlib.sha256(fab_bytes).hexdigest(), fab_bytes, {})
        channel = grpc.insecure_channel(f"127.0.0.1:{self.control_port}")
        try:
            res = ControlStub(channel).StartRun(
                StartRunRequest(fab=fab_to_proto(fab), override_config=user_config_to_proto({})),
                timeout=30,
            )
        except grpc.RpcError as exc:
            raise FlError(f"the SuperLink refused the federated run: {exc.details()}") from exc
        finally:
            channel.close()
        if not res.HasField("run_id"):
            raise FlError("the SuperLink did not start the federated run")
        return int(res.run_id)

    def run_status(self, run_id: int) -> tuple[str, str, str]:
        """(status, sub_status, details) of a run from the Control API (``flwr ls``)."""
        import grpc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            from flwr.proto.control_pb2 import ListRunsRequest
            from flwr.proto.control_pb2_grpc import ControlStub

        channel = grpc.insecure_channel(f"127.0.0.1:{self.control_port}")
        try:
            res = ControlStub(channel).ListRuns(ListRunsRequest(run_id=run_id), timeout=10)
        except grpc.RpcError as exc:
            raise FlError(f"cannot read the run's status: {exc.details()}") from exc
        finally:
            channel.close()
        st = res.run_dict[run_id].status
        return st.status, st.sub_status, st.details

    def run_logs(self, run_id: int, seconds: float = 3.0) -> str:
        """The run's ServerApp log lines (``flwr log``), read for at most ``seconds``."""
        import grpc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            from flwr.proto.control_pb2 import StreamLogsRequest
            from flwr.proto.control_pb2_grpc import ControlStub

        channel = grpc.insecure_channel(f"127.0.0.1:{self.control_port}")
        out: list[str] = []
        try:
            for res in ControlStub(channel).StreamLogs(
                StreamLogsRequest(run_id=run_id, after_timestamp=0.0), timeout=seconds
            ):
                out.append(res.log_output)
        except grpc.RpcError:
            pass
        finally:
            channel.close()
        return "".join(out)

    def kill_party(self, party: str) -> None:
        """Kill a party's SuperNode and its ClientApp processes (tests: a party drops out)."""
        proc = self.procs.get(f"supernode_{party}")
        if proc is not None and proc.poll() is None:
            _kill_tree(proc.pid)

    def pids(self) -> list[int]:
        """Pids of every process of the deployment (the started ones and their children)."""
        import psutil

        out: list[int] = []
        for proc in self.procs.values():
            try:
                p = psutil.Process(proc.pid)
                out += [p.pid, *[c.pid for c in p.children(recursive=True)]]
            except psutil.NoSuchProcess:
                continue
        return out

    def stop(self) -> None:
        """Kill every process started (and its children); wait for them. Idempotent."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                _kill_tree(proc.pid)
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):  # SIGKILL does not hang
                proc.wait(10)

    def __enter__(self) -> FlowerDeployment:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_tree(pid: int) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(procs, timeout=10)


def wait_result(path: Path, deadline: float, dep: FlowerDeployment, run_id: int) -> dict[str, Any]:
    """Wait (bounded) for the ServerApp's result file.

    Raises:
        FlError: the SuperLink died, the run finished without a result (the ServerApp's
            failure details), or ``deadline`` (time.monotonic) passed.
    """
    link = dep.procs.get("superlink")
    next_check = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
        if link is not None and link.poll() is not None:
            raise FlError(f"the SuperLink exited with code {link.returncode} during the run")
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + 1.0
            status, sub, details = dep.run_status(run_id)
            if status == "finished" and not path.exists():
                time.sleep(0.2)
                if not path.exists():
                    raise FlError(f"the ServerApp ended without a result ({sub}: {details[:300]})")
        time.sleep(0.05)
    raise FlError("the federated run did not finish within its time limit (联邦训练超时)")


# --- policy and params -----------------------------------------------------------------------
class FlPolicy(BaseModel):
    """The contract's ``sandbox.fl`` block (联邦学习策略).

    Attributes:
        min_parties: fewest parties a job may have, and fewest that must remain after a
            dropout for the run to carry on (≥ 3: with 2, each learns the other's update
            from the sum).
        max_parties: most parties of one job.
        min_party_rows: fewest rows a party must hold (rows), checked by the platform and by
            the party's ClientApp.
        max_rounds: most FedAvg rounds of one job.
        on_dropout: ``fail`` (any party missing a round ends the job, no model) or
            ``continue`` (carry on while at least ``min_parties`` remain; SecAgg+ still
            unmasks the sum of the remaining parties).
        round_timeout_seconds: how long the server waits for the parties' replies to one
            message (seconds); a party silent for longer has dropped out.
        secure_aggregation_required: jobs may not turn SecAgg+ off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_parties: int = Field(default=3, ge=3, le=100)
    max_parties: int = Field(default=20, ge=3, le=100)
    min_party_rows: int = Field(default=200, ge=10)
    max_rounds: int = Field(default=20, ge=1, le=1000)
    on_dropout: Literal["fail", "continue"] = "fail"
    round_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    secure_aggregation_required: bool = True


def fl_policy(contract: Contract) -> FlPolicy:
    """The contract's ``sandbox.fl`` block, validated (defaults when absent).

    Raises:
        ContractError: naming ``sandbox.fl.<key>``.
    """
    try:
        return FlPolicy.model_validate((contract.sandbox or {}).get("fl") or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(["sandbox", "fl", *(str(p) for p in first["loc"])])
        msg = (
            f"unknown key {first['loc'][-1]!r}"
            if first["type"] == "extra_forbidden"
            else first["msg"]
        )
        raise ContractError(msg, path=contract.code, key=key) from exc


class FeatureSpec(BaseModel):
    """One model feature from a column, on a fixed public scale (no data-derived scaling).

    ``numeric``: (x − center) / scale; ``log1p``: (ln(1 + max(x, 0)) − center) / scale;
    ``onehot``: one 0/1 feature per listed level (others are all zeros).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    transform: Literal["numeric", "log1p", "onehot"] = "numeric"
    center: float = 0.0
    scale: float = Field(default=1.0, gt=0)
    levels: list[str] = Field(default_factory=list, max_length=50)


class PartitionSpec(BaseModel):
    """How the parties are cut: ``substr(column, start, length)`` (0-based) names a row's
    party, e.g. the province/city of a USCC's registration authority (characters 3–4 or 3–6,
    GB 32100-2015 §4); ``parties`` lists the party keys that take part."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    start: int = Field(default=0, ge=0, le=64)
    length: int = Field(default=64, ge=1, le=64)
    parties: list[str] = Field(min_length=3, max_length=100)


class FlTrainParams(BaseModel):
    """Params of ``fl_train``.

    Attributes:
        model: ``logistic_regression`` (the only model so far; the apps take others by name).
        features: 1–50 :class:`FeatureSpec` s.
        label: a 0/1 (integer or boolean) column, or ``synthetic_default`` (demo only: a
            seeded synthetic default label, see :func:`synthetic_default`).
        partition: the parties (:class:`PartitionSpec`).
        rounds: FedAvg rounds. local_epochs: gradient steps per round and party.
        learning_rate: η. l2: λ of the L2 penalty. holdout_fraction: rows each party keeps
            for evaluation. seed: seeds the hold-out split (and the synthetic label).
        secure_aggregation: SecAgg+ on (policy may require it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["logistic_regression"] = "logistic_regression"
    features: list[FeatureSpec] = Field(min_length=1, max_length=50)
    label: str
    partition: PartitionSpec
    rounds: int = Field(default=5, ge=1, le=1000)
    local_epochs: int = Field(default=20, ge=1, le=1000)
    learning_rate: float = Field(default=0.5, gt=0, le=10)
    l2: float = Field(default=1e-3, ge=0, le=10)
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0
    secure_aggregation: bool = True


SYNTHETIC_LABEL = "synthetic_default"


def feature_names(params: FlTrainParams) -> list[str]:
    """Model feature names in order: the column, or ``column=level`` for one-hot levels."""
    out: list[str] = []
    for f in params.features:
        out += [f"{f.column}={lv}" for lv in f.levels] if f.transform == "onehot" else [f.column]
    return out


def engineer(table: pa.Table, params: FlTrainParams) -> tuple[np.ndarray, np.ndarray]:
    """Features (float64[n × d]) and a row-validity mask (bool[n]: no null input), vectorised.

    Raises:
        FlError: a feature column is missing.
    """
    cols: list[np.ndarray] = []
    valid = np.ones(table.num_rows, dtype=bool)
    for f in params.features:
        if f.column not in table.column_names:
            raise FlError(f"feature column {f.column!r} is not in the dataset")
        arr = table[f.column]
        valid &= ~np.asarray(pc.is_null(arr).to_numpy(zero_copy_only=False), dtype=bool)
        if f.transform == "onehot":
            s = pc.cast(arr, pa.string())
            for lv in f.levels:
                eq = pc.fill_null(pc.equal(s, lv), False)
                cols.append(np.asarray(eq.to_numpy(zero_copy_only=False), dtype=np.float64))
            continue
        x = np.asarray(
            pc.fill_null(pc.cast(arr, pa.float64()), 0.0).to_numpy(zero_copy_only=False),
            dtype=np.float64,
        )
        if f.transform == "log1p":
            x = np.log1p(np.maximum(x, 0.0))
        cols.append((x - f.center) / f.scale)
    return np.column_stack(cols), valid


def synthetic_default(table: pa.Table, seed: int) -> np.ndarray:
    """Demo label (合成违约标签): float64[n] in {0, 1}, seeded, with a real signal.

    logit = −1.2 + {A: −1.5, B: −0.3, C: 0.8, D: 2.0, M: 1.0}[credit_grade]
            − 0.45 · (ln(1 + tax_paid) − 10.5) + N(0, 0.5²);   y ~ Bernoulli(σ(logit)).

    Needs ``credit_grade`` and ``tax_paid`` (the tax dataset, SWJ-0001); nulls count as
    grade M / zero tax. The draws come from ``numpy.random.default_rng(seed)``.

    Raises:
        FlError: a needed column is missing.
    """
    for c in ("credit_grade", "tax_paid"):
        if c not in table.column_names:
            raise FlError(f"{SYNTHETIC_LABEL} needs column {c!r}")
    grade = np.asarray(pc.fill_null(table["credit_grade"], "M").to_numpy(zero_copy_only=False))
    effect = {"A": -1.5, "B": -0.3, "C": 0.8, "D": 2.0, "M": 1.0}
    g = np.zeros(len(grade))
    for k, v in effect.items():
        g[grade == k] = v
    tax = np.asarray(
        pc.fill_null(pc.cast(table["tax_paid"], pa.float64()), 0.0).to_numpy(zero_copy_only=False)
    )
    rng = np.random.default_rng(seed)
    logit = -1.2 + g - 0.45 * (np.log1p(np.maximum(tax, 0)) - 10.5) + rng.normal(0, 0.5, len(g))
    return (rng.random(len(g)) < 1 / (1 + np.exp(-logit))).astype(np.float64)


def labels(table: pa.Table, params: FlTrainParams) -> np.ndarray:
    """The label vector float64[n] (NaN where null).

    Raises:
        FlError: the label column is missing or holds values other than 0/1.
    """
    if params.label == SYNTHETIC_LABEL:
        return synthetic_default(table, params.seed)
    if params.label not in table.column_names:
        raise FlError(f"label column {params.label!r} is not in the dataset")
    y = np.asarray(
        pc.cast(table[params.label], pa.float64()).to_numpy(zero_copy_only=False),
        dtype=np.float64,
    )
    bad = ~np.isnan(y) & (y != 0) & (y != 1)
    if bad.any():
        raise FlError(f"label column {params.label!r} holds {int(bad.sum())} values not 0/1")
    return y


def partition_parties(
    table: pa.Table, params: FlTrainParams, out_dir: Path, *, min_rows: int
) -> dict[str, dict[str, Any]]:
    """Cut the table into the parties and write each party's model rows to its own folder.

    Each party folder ``<out_dir>/party_<key>/party.parquet`` (mode 0700) holds only that
    party's rows, as features + ``label`` (float64). Rows with a null input are dropped.

    Args:
        table: pyarrow.Table[rows × needed columns] of the pinned version.
        params: the job's params. out_dir: the run's folder. min_rows: rows a party needs.

    Returns:
        party key → ``{"dir": Path, "rows": int, "dropped_null_rows": int}``.

    Raises:
        FlError: a party holds fewer than ``min_rows`` rows (names the party).
    """
    import pyarrow.parquet as pq

    p = params.partition
    x, valid = engineer(table, params)
    y = labels(table, params)
    valid &= ~np.isnan(y)
    key = pc.utf8_slice_codeunits(
        pc.cast(table[p.column], pa.string()), p.start, p.start + p.length
    )
    key_np = np.asarray(pc.fill_null(key, "").to_numpy(zero_copy_only=False))
    names = feature_names(params)
    out: dict[str, dict[str, Any]] = {}
    for party in p.parties:
        in_party = key_np == party
        rows = in_party & valid
        n = int(rows.sum())
        if n < min_rows:
            raise FlError(
                f"party {party!r} ({p.column}[{p.start}:{p.start + p.length}]) holds {n} "
                f"usable rows, fewer than the minimum {min_rows} (sandbox.fl.min_party_rows, "
                "参与方数据量不足)"
            )
        d = out_dir / f"party_{party}"
        d.mkdir(parents=True, mode=0o700)
        cols = {name: x[rows, i] for i, name in enumerate(names)}
        cols["label"] = y[rows]
        pq.write_table(pa.table(cols), d / "party.parquet")
        out[party] = {"dir": d, "rows": n, "dropped_null_rows": int((in_party & ~valid).sum())}
    return out


def run_federated(
    parties: dict[str, Path],
    *,
    features: list[str],
    work_dir: Path,
    rounds: int,
    local_epochs: int = 20,
    learning_rate: float = 0.5,
    l2: float = 1e-3,
    holdout_fraction: float = 0.2,
    seed: int = 0,
    secure_aggregation: bool = True,
    min_parties: int = 3,
    on_dropout: str = "fail",
    min_rows: int = 100,
    round_timeout: float = 60.0,
    time_limit: float = 600.0,
    max_weight: float | None = None,
    record: bool = False,
    env_per_party: dict[str, dict[str, str]] | None = None,
    on_started: Any = None,
) -> dict[str, Any]:
    """Run one federated training on a loopback Flower deployment and return its result.

    Args:
        parties: party name → folder holding its ``party.parquet`` (features + ``label``).
        features: feature column names, in model order.
        work_dir: a fresh folder for the deployment (wrappers, FAB, logs, result).
        rounds … seed: training settings (see :class:`FlTrainParams`).
        secure_aggregation: SecAgg+ on. min_parties, on_dropout: dropout policy.
        min_rows: rows a party's ClientApp requires. round_timeout: seconds per message.
        time_limit: wall-clock bound of the whole run, seconds.
        max_weight: SecAgg+ weight bound (default: the largest party's rows).
        record: tests: parties save their plaintext updates in ``<dir>/record`` and the
            server saves every reply it receives in ``<work_dir>/server_record``.
        env_per_party: extra environment per party (tests: ``GOVDX_FL_OPEN_LOG``).
        on_started: callback(deployment) once the run is submitted (tests: kill a party).

    Returns:
        The ServerApp's result dict (``status`` ``ok`` | ``failed``, ``reason``,
        ``coefficients``, ``intercept``, ``pooled``, ``per_party``, ``history``, ``rounds``,
        ``seconds``) plus ``wall_seconds`` (start to result, seconds).

    Raises:
        FlError: the deployment could not start or the run produced no result in time.
    """
    t0 = time.monotonic()
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    envs = {k: dict(v) for k, v in (env_per_party or {}).items()}
    server_record = work_dir / "server_record"
    if record:
        server_record.mkdir(exist_ok=True)
        for name, d in parties.items():
            (d / "record").mkdir(exist_ok=True)
            envs.setdefault(name, {})["record-dir"] = str(d / "record")
    if max_weight is None:
        import pyarrow.parquet as pq

        max_weight = float(
            max(pq.read_metadata(d / "party.parquet").num_rows for d in parties.values())
        )
    result_path = work_dir / RESULT_FILE
    config: dict[str, Any] = {
        "features": ",".join(features),
        "label": "label",
        "num-rounds": rounds,
        "num-parties": len(parties),
        "min-parties": min_parties,
        "on-dropout": on_dropout,
        "min-rows": min_rows,
        "local-epochs": local_epochs,
        "learning-rate": learning_rate,
        "l2": l2,
        "holdout-fraction": holdout_fraction,
        "seed": seed,
        "secure-aggregation": secure_aggregation,
        "round-timeout": round_timeout,
        "max-weight": max(max_weight, 1.0),
        "result-path": str(result_path),
        "record-dir": str(server_record) if record else "",
    }
    dep = FlowerDeployment(work_dir / "flower", dict(parties), envs)
    try:
        dep.start()
        app = write_fab_dir(work_dir / "flower" / "app", config)
        run_id = dep.submit(app)
        if on_started is not None:
            on_started(dep)
        result = wait_result(result_path, t0 + time_limit, dep, run_id)
    finally:
        dep.stop()
    result["wall_seconds"] = round(time.monotonic() - t0, 3)
    return result


# --- the computation -------------------------------------------------------------------------
@register_computation
class FlTrain(Computation):
    """Federated training (联邦学习建模): logistic regression over ≥ 3 parties with FedAvg on
    Flower, updates protected by SecAgg+; released: coefficients, per-party and pooled hold-out
    metrics, rounds and timing (docs/federated.md). No row, score or per-party update leaves.
    """

    name: ClassVar[str] = "fl_train"
    kind: ClassVar[Literal["aggregate", "psi"]] = "aggregate"
    Params = FlTrainParams

    @classmethod
    def check(cls, params: FlTrainParams, contract: Contract, policy: Any) -> list[str]:
        from sandbox._policy import IDENTIFIER_ELEMENTS

        try:
            fp = fl_policy(contract)
        except ContractError as exc:
            return [str(exc)]
        reasons: list[str] = []
        names = {f.name for f in contract.fields}
        n = len(set(params.partition.parties))
        if n != len(params.partition.parties):
            reasons.append("computation.params.partition.parties: repeated party key")
        if n < fp.min_parties or n > fp.max_parties:
            reasons.append(
                f"computation.params.partition.parties: {n} parties, outside "
                f"[{fp.min_parties}, {fp.max_parties}] (sandbox.fl.min_parties/max_parties)"
            )
        if params.rounds > fp.max_rounds:
            reasons.append(
                f"computation.params.rounds: {params.rounds} is above sandbox.fl.max_rounds = "
                f"{fp.max_rounds}"
            )
        if fp.secure_aggregation_required and not params.secure_aggregation:
            reasons.append(
                "computation.params.secure_aggregation: this dataset requires SecAgg+ "
                "(sandbox.fl.secure_aggregation_required, 安全聚合)"
            )
        for i, f in enumerate(params.features):
            key = f"computation.params.features.{i}.column"
            if f.column not in names:
                reasons.append(f"{key}: dataset {contract.code} has no field {f.column!r}")
                continue
            fld = contract.field(f.column)
            if fld.element in IDENTIFIER_ELEMENTS or contract.primary_key == [f.column]:
                reasons.append(f"{key}: {f.column!r} is an identifier; not a model feature")
            if f.transform == "onehot" and not f.levels:
                reasons.append(f"computation.params.features.{i}.levels: onehot needs levels")
        if params.partition.column not in names:
            reasons.append(
                f"computation.params.partition.column: dataset {contract.code} has no field "
                f"{params.partition.column!r}"
            )
        if params.label != SYNTHETIC_LABEL and params.label not in names:
            reasons.append(
                f"computation.params.label: dataset {contract.code} has no field {params.label!r}"
            )
        return reasons

    @classmethod
    def columns(cls, params: FlTrainParams, contract: Contract) -> list[str]:
        cols = [f.column for f in params.features] + [params.partition.column]
        if params.label == SYNTHETIC_LABEL:
            cols += ["credit_grade", "tax_paid"]
        else:
            cols.append(params.label)
        return list(dict.fromkeys(cols))

    @classmethod
    def run(cls, ctx: RunContext) -> Output:
        import tempfile

        p: FlTrainParams = ctx.params
        fp = fl_policy(ctx.contract)
        work = Path(tempfile.mkdtemp(prefix="govdx-fl-"))
        try:
            parties = partition_parties(ctx.table, p, work / "parties", min_rows=fp.min_party_rows)
            result = run_federated(
                {k: v["dir"] for k, v in parties.items()},
                features=feature_names(p),
                work_dir=work / "run",
                rounds=p.rounds,
                local_epochs=p.local_epochs,
                learning_rate=p.learning_rate,
                l2=p.l2,
                holdout_fraction=p.holdout_fraction,
                seed=p.seed,
                secure_aggregation=p.secure_aggregation,
                min_parties=fp.min_parties,
                on_dropout=fp.on_dropout,
                min_rows=fp.min_party_rows,
                round_timeout=fp.round_timeout_seconds,
                time_limit=max(30.0, ctx.policy.time_limit_seconds - 15.0),
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if result.get("status") != "ok":
            # no partial model is ever released as final
            raise FlError(f"federated training failed: {result.get('reason')}")
        doc = {
            "model": p.model,
            "features": result["features"],
            "coefficients": result["coefficients"],
            "intercept": result["intercept"],
            "metrics": {"pooled": result["pooled"], "per_party": result["per_party"]},
            "parties": {k: {"rows": v["rows"]} for k, v in parties.items()},
            "rounds": result["rounds"],
            "history": result["history"],
            "secure_aggregation": result["secure_aggregation"],
            "seconds": result["seconds"],
            "rounds_per_second": result["rounds_per_second"],
        }
        data = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return Output(
            data,
            "application/json",
            summary={
                "parties": len(parties),
                "rounds": result["rounds"],
                "pooled_auc": result["pooled"]["auc"],
                "seconds": result["seconds"],
            },
        )


# --- the demo step -----------------------------------------------------------------------------
#: Provinces (GB/T 2260, USCC characters 3–4) of the demo's three parties: 广东, 四川, 河南.
DEMO_PARTIES = ("44", "51", "41")


def demo_fl_params(*, parties: tuple[str, ...] = DEMO_PARTIES, rounds: int = 3) -> dict[str, Any]:
    """The demo job's ``fl_train`` params: default risk (违约风险) from tax credit grade and tax
    paid, across three provinces' taxpayers (parties cut by USCC characters 3–4)."""
    return {
        "model": "logistic_regression",
        "features": [
            {"column": "tax_paid", "transform": "log1p", "center": 10.5, "scale": 1.5},
            {"column": "credit_grade", "transform": "onehot", "levels": ["A", "C", "D", "M"]},
        ],
        "label": SYNTHETIC_LABEL,
        "partition": {"column": "taxpayer_id", "start": 2, "length": 2, "parties": list(parties)},
        "rounds": rounds,
        "local_epochs": 30,
        "learning_rate": 1.0,
        "l2": 1e-3,
        "seed": 20261129,
    }


def demo_fl_step(
    settings: Any,
    *,
    dataset: str = "SWJ-0001",
    requester: str = "bank_credit",
    steward: str = "swj_steward",
    reviewer: str = "reviewer_1",
    parties: tuple[str, ...] = DEMO_PARTIES,
    rounds: int = 3,
) -> dict[str, Any]:
    """Demo step: a default-risk model (违约风险模型) trained across three provinces' tax data
    with FedAvg on Flower and SecAgg+, released to the bank after 双人复核.

    Needs the tax dataset ingested with ``fl_train`` in its ``sandbox.allowed_computations``
    (and, optionally, a ``sandbox.fl`` block). Missing users are created. Labels are the seeded
    synthetic default of :func:`synthetic_default` (the demo has no real defaults).

    Args:
        settings: the deployment's :class:`govdx.Settings`.
        dataset, requester, steward, reviewer: catalog code and user names.
        parties: party keys (USCC characters 3–4: province codes). rounds: FedAvg rounds.

    Returns:
        ``{"job_id", "state", "parties": {key: rows}, "rounds", "seconds",
        "coefficients", "intercept", "pooled": {auc, accuracy, log_loss, rows},
        "per_party": {key: {...}}}``.

    Raises:
        sandbox.SandboxError: a refusal or a failed run (the worker's reason).
    """
    from sandbox._service import Sandbox
    from sandbox._spec import parse_job_spec

    box = Sandbox(settings)
    try:
        box.ensure_users(
            [
                (requester, "requester", "BANK"),
                (steward, "steward", dataset.split("-")[0]),
                (reviewer, "reviewer", None),
            ]
        )
        spec = parse_job_spec(
            {
                "purpose": "信易贷：跨省纳税数据联合训练违约风险模型（数据不出域，安全聚合）",
                "legal_basis": "政务数据共享协议 2026-FL-01",
                "dataset": dataset,
                "computation": {
                    "name": "fl_train",
                    "params": demo_fl_params(parties=parties, rounds=rounds),
                },
            }
        )
        job_id, data = box.run_through(
            spec, requester=requester, approvers=[steward, reviewer], what="demo FL"
        )
        doc = json.loads(data)
        return {
            "job_id": job_id,
            "state": "released",
            "parties": {k: v["rows"] for k, v in doc["parties"].items()},
            "rounds": doc["rounds"],
            "seconds": doc["seconds"],
            "coefficients": doc["coefficients"],
            "intercept": doc["intercept"],
            "pooled": doc["metrics"]["pooled"],
            "per_party": doc["metrics"]["per_party"],
        }
    finally:
        box.close()
