"""Federated logistic regression on Flower (联邦学习): the ClientApp and the ServerApp.

This module is the Flower App (FAB) that every deployment runs — the embedded default on
loopback and a real one where each department runs its own SuperNode. It imports only the
standard library, numpy, pyarrow and flwr, never the rest of govdx, so it is copied as is into
the FAB (``govdx_fl_app.py``) that the SuperLink ships to the SuperNodes.

* **ClientApp** (one per party, in the party's own process): reads *its own* table
  ``<data-dir>/party.parquet`` (the SuperNode's ``--node-config data-dir=…``), splits off its
  hold-out rows (seeded, kept by the party), trains a few local epochs of full-batch gradient
  descent with L2 from the global model and returns only the new weights. Wrapped by Flower's
  ``secaggplus_mod`` the weights leave the party only masked (SecAgg+, Bell et al., CCS 2020).
* **ServerApp** (the platform): FedAvg over ``SecAggPlusWorkflow`` — the server only ever
  unmasks the weighted *sum* of the parties' weights; per-party and pooled hold-out metrics
  (AUC, accuracy, log-loss) come back from the evaluate rounds. It writes a JSON result to
  ``result-path`` with ``status`` ``ok`` or ``failed`` and a reason (a party dropped out and
  fewer than ``min-parties`` remain, a party's schema differs, too few rows, divergence).

Model: p = σ(x·w + b); local loss = mean log-loss + (λ/2)‖w‖²; step w ← w − η ∇. The features are
already on a fixed public scale (the job's feature engineering), so no data-derived scaling is
exchanged. Pooled AUC is computed from the sum of the parties' score histograms (``AUC_BINS``
bins of the predicted probability per label), exact up to ties within a bin.

Source: Flower 1.32 ``flwr.serverapp``/``flwr.clientapp``, ``flwr.server.workflow.
SecAggPlusWorkflow``, ``flwr.client.mod.secaggplus_mod``; McMahan et al., "Communication-Efficient
Learning of Deep Networks from Decentralized Data" (FedAvg), AISTATS 2017.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

with warnings.catch_warnings():
    # flwr's generated protobuf modules warn about their gencode version at import
    warnings.simplefilter("ignore", UserWarning)
    from flwr.app import Context
    from flwr.client import Client, ClientApp, NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.common import (
        Parameters,
        Scalar,
        ndarrays_to_parameters,
        parameters_to_ndarrays,
    )
    from flwr.server import ServerApp, ServerConfig
    from flwr.server.compat import LegacyContext
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.serverapp.grid import Grid

#: File a party's ClientApp reads (its own partition, never another party's).
PARTY_FILE = "party.parquet"
#: Env var naming a file where a party process appends every path it opened (tests).
OPEN_LOG_ENV = "GOVDX_FL_OPEN_LOG"
#: Bins of the predicted-probability histograms behind the pooled AUC.
AUC_BINS = 1000
_EPS = 1e-12


# --- model math (numpy) ------------------------------------------------------------------------
def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, float64[n], numerically stable for large |z|."""
    out = np.empty_like(z, dtype=np.float64)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def local_train(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    b: float,
    *,
    epochs: int,
    lr: float,
    l2: float,
) -> tuple[np.ndarray, float]:
    """Full-batch gradient descent on the L2-regularised log-loss.

    Args:
        x: float64[n × d] features. y: float64[n] labels in {0, 1}.
        w: float64[d] start weights. b: start intercept.
        epochs: gradient steps. lr: step size η. l2: λ (not applied to the intercept).

    Returns:
        (w, b) after ``epochs`` steps.
    """
    w = np.array(w, dtype=np.float64)
    n = max(len(y), 1)
    for _ in range(epochs):
        p = sigmoid(x @ w + b)
        g = p - y
        w -= lr * (x.T @ g / n + l2 * w)
        b -= lr * float(g.sum() / n)
    return w, float(b)


def auc_from_histograms(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUC (Mann–Whitney U / (n⁺ n⁻)) from score histograms, ties within a bin count ½.

    Args:
        pos, neg: int64[bins] counts of positives / negatives per score bin (ascending).

    Returns:
        AUC in [0, 1]; NaN when a class is empty.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg  # negatives in strictly lower bins
    return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))


def auc_exact(y: np.ndarray, p: np.ndarray) -> float:
    """AUC by the rank statistic (average ranks for ties). NaN when a class is empty."""
    from scipy.stats import rankdata

    y = np.asarray(y)
    n_pos = int((y == 1).sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(p)
    return float((r[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """``{"auc", "accuracy", "log_loss", "rows"}`` of predictions p (float64[n]) for y."""
    pc = np.clip(p, _EPS, 1 - _EPS)
    return {
        "auc": auc_exact(y, p),
        "accuracy": float(((p >= 0.5) == (y == 1)).mean()) if len(y) else float("nan"),
        "log_loss": float(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean())
        if len(y)
        else float("nan"),
        "rows": len(y),
    }


def split_holdout(n: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask[n] of hold-out rows: a seeded ``round(fraction × n)`` of them."""
    mask = np.zeros(n, dtype=bool)
    k = round(fraction * n)
    mask[np.random.default_rng(seed).permutation(n)[:k]] = True
    return mask


def _log_open(path: Path) -> None:
    log = os.environ.get(OPEN_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\t{path}\n")


def read_party_table(data_dir: str, features: list[str], label: str) -> tuple[np.ndarray, ...]:
    """Read the party's own ``<data_dir>/party.parquet``: (x float64[n × d], y float64[n]).

    Raises:
        ValueError: a feature or the label is missing (schema differs), or a value is null.
    """
    import pyarrow.parquet as pq

    path = Path(data_dir) / PARTY_FILE
    _log_open(path)
    table = pq.read_table(path)
    missing = [c for c in [*features, label] if c not in table.column_names]
    if missing:
        raise ValueError(f"schema differs: {path.name} has no column(s) {missing}")
    cols = []
    for c in [*features, label]:
        col = table[c]
        if col.null_count:
            raise ValueError(f"column {c!r} of {path.name} has {col.null_count} nulls")
        cols.append(np.asarray(col.to_numpy(), dtype=np.float64))
    return np.column_stack(cols[:-1]) if features else np.empty((table.num_rows, 0)), cols[-1]


# --- the ClientApp -------------------------------------------------------------------------------
def _cfg(context: Context, key: str, default: Any) -> Any:
    return context.run_config.get(key, default)


def _features(context: Context) -> list[str]:
    return [f for f in str(_cfg(context, "features", "")).split(",") if f]


class PartyClient(NumPyClient):
    """One party: trains on its own training rows, evaluates on its own hold-out rows."""

    def __init__(self, context: Context) -> None:
        self.party = str(context.node_config.get("party", "?"))
        data_dir = str(context.node_config["data-dir"])
        self.features = _features(context)
        label = str(_cfg(context, "label", "label"))
        x, y = read_party_table(data_dir, self.features, label)
        min_rows = int(_cfg(context, "min-rows", 100))
        if len(y) < min_rows:
            raise ValueError(
                f"party {self.party} has {len(y)} rows, fewer than the minimum {min_rows}"
            )
        seed = int(_cfg(context, "seed", 0))
        hold = split_holdout(len(y), float(_cfg(context, "holdout-fraction", 0.2)), seed)
        self.x, self.y = x[~hold], y[~hold]
        self.xh, self.yh = x[hold], y[hold]
        self.epochs = int(_cfg(context, "local-epochs", 5))
        self.lr = float(_cfg(context, "learning-rate", 0.5))
        self.l2 = float(_cfg(context, "l2", 1e-3))
        self.record = str(context.node_config.get("record-dir", ""))
        self.data_dir = data_dir

    def get_parameters(self, config: dict[str, Scalar]) -> list[np.ndarray]:
        d = len(self.features)
        return [np.zeros(d), np.zeros(1)]

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Scalar]
    ) -> tuple[list[np.ndarray], int, dict[str, Scalar]]:
        w, b = parameters[0], float(parameters[1][0])
        if w.shape != (len(self.features),):
            raise ValueError(f"party {self.party}: model has {w.shape} weights, schema differs")
        w, b = local_train(self.x, self.y, w, b, epochs=self.epochs, lr=self.lr, l2=self.l2)
        if not (np.all(np.isfinite(w)) and math.isfinite(b)):
            raise FloatingPointError(f"party {self.party}: local training diverged (NaN/inf)")
        out = [w, np.array([b])]
        if self.record:  # tests: the party's plaintext update, kept on the party's side
            rnd = int(config.get("server_round", 0)) if config else 0
            np.save(Path(self.record) / f"update_{rnd}_{os.getpid()}.npy", np.concatenate(out))
        return out, len(self.y), {}

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Scalar]
    ) -> tuple[float, int, dict[str, Scalar]]:
        w, b = parameters[0], float(parameters[1][0])
        p = sigmoid(self.xh @ w + b)
        m = metrics(self.yh, p)
        bins = np.minimum((p * AUC_BINS).astype(np.int64), AUC_BINS - 1)
        pos = np.bincount(bins[self.yh == 1], minlength=AUC_BINS).astype(np.int64)
        neg = np.bincount(bins[self.yh == 0], minlength=AUC_BINS).astype(np.int64)
        correct = int(((p >= 0.5) == (self.yh == 1)).sum())
        return (
            m["log_loss"],
            len(self.yh),
            {
                "party": self.party,
                "auc": m["auc"],
                "accuracy": m["accuracy"],
                "log_loss": m["log_loss"],
                "correct": correct,
                "hist_pos": pos.tobytes(),
                "hist_neg": neg.tobytes(),
            },
        )


def client_fn(context: Context) -> Client:
    """Flower ``client_fn``: the party's client over its own data folder."""
    return PartyClient(context).to_client()


client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


# --- the ServerApp -------------------------------------------------------------------------------
class _TimedGrid(Grid):
    """A Grid that bounds every wait (Flower's evaluate stage would wait forever for a party
    that died) and, when asked, records the content of every reply (tests: no plaintext)."""

    def __init__(
        self, inner: Grid, timeout: float, record_dir: str = "", poll: float = 0.1
    ) -> None:
        self._inner = inner
        self._timeout = timeout
        self._record = record_dir
        self._n = 0
        self._poll = poll
        #: node ids that did not answer a message within the timeout (dropped out)
        self.dropped: set[int] = set()

    def set_run(self, run: Any) -> None:
        self._inner.set_run(run)

    @property
    def run(self) -> Any:
        return self._inner.run

    def create_message(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Any:
        return self._inner.get_node_ids()

    def push_messages(self, messages: Any) -> Any:
        return self._inner.push_messages(messages)

    def pull_messages(self, message_ids: Any) -> Any:
        return self._inner.pull_messages(message_ids)

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
        t = self._timeout if timeout is None else min(timeout, self._timeout)
        messages = list(messages)
        dst = {m.metadata.dst_node_id for m in messages}
        ids = set(self._inner.push_messages(messages))
        end = time.monotonic() + t
        replies: list[Any] = []
        while ids and time.monotonic() < end:
            got = list(self._inner.pull_messages(ids))
            replies += got
            ids -= {m.metadata.reply_to_message_id for m in got}
            if ids:
                time.sleep(self._poll)
        answered = {m.metadata.src_node_id for m in replies}
        self.dropped |= dst - answered
        if self._record:
            for msg in replies:
                if not msg.has_content():
                    continue
                arrays = []
                for rec in msg.content.array_records.values():
                    arrays += [a.numpy().ravel() for a in rec.values()]
                for rec in msg.content.config_records.values():
                    for v in rec.values():
                        if isinstance(v, list) and v and isinstance(v[0], bytes):
                            for blob in v:
                                try:
                                    arrays.append(np.load(__import__("io").BytesIO(blob)).ravel())
                                except Exception:
                                    continue
                if arrays:
                    self._n += 1
                    np.save(
                        Path(self._record) / f"received_{self._n}.npy",
                        np.concatenate([a.astype(np.float64) for a in arrays]),
                    )
        return replies


class _Abort(Exception):
    """The run must end now with a reason (no model is released)."""


class FedAvgLogReg(FedAvg):
    """FedAvg that checks every aggregate and keeps per-party and pooled hold-out metrics."""

    def __init__(self, *, n_parties: int, min_parties: int, on_dropout: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n_parties = n_parties
        self.grid: _TimedGrid | None = None
        self.min_parties = min_parties
        self.on_dropout = on_dropout
        self.history: list[dict[str, Any]] = []
        self.final: Parameters | None = None
        self.failures: list[str] = []
        self._t0 = time.perf_counter()

    def _check_dropouts(self, server_round: int) -> None:
        dropped = len(self.grid.dropped) if self.grid is not None else 0
        if not dropped:
            return
        left = self.n_parties - dropped
        if self.on_dropout == "fail":
            raise _Abort(
                f"round {server_round}: {dropped} part(ies) did not answer within the round "
                "timeout and sandbox.fl.on_dropout is 'fail' (参与方掉线)"
            )
        if left < self.min_parties:
            raise _Abort(
                f"round {server_round}: {dropped} part(ies) dropped out, {left} left, fewer "
                f"than sandbox.fl.min_parties = {self.min_parties} (参与方不足)"
            )

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        self._check_dropouts(server_round)
        if failures:
            self.failures += [_reason(f) for f in failures]
            if self.on_dropout == "fail":
                raise _Abort(
                    f"round {server_round}: {len(failures)} party update(s) missing or failed "
                    f"({'; '.join(self.failures[-len(failures) :])}) and sandbox.fl.on_dropout "
                    "is 'fail' (参与方掉线)"
                )
        if not results:
            raise _Abort(f"round {server_round}: no party update could be aggregated")
        params, m = super().aggregate_fit(server_round, results, failures)
        arrays = parameters_to_ndarrays(params) if params is not None else []
        if not arrays or not all(np.all(np.isfinite(a)) for a in arrays):
            raise _Abort(f"round {server_round}: the aggregated model is not finite (训练发散)")
        self.final = params
        return params, m

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
        self._check_dropouts(server_round)
        if failures:
            self.failures += [_reason(f) for f in failures]
        active = len(results)
        if active < self.min_parties:
            raise _Abort(
                f"round {server_round}: {active} part(ies) answered, fewer than "
                f"sandbox.fl.min_parties = {self.min_parties} (参与方不足)"
            )
        if failures and self.on_dropout == "fail":
            raise _Abort(
                f"round {server_round}: {len(failures)} part(ies) did not evaluate "
                f"({'; '.join(self.failures[-len(failures) :])}) (参与方掉线)"
            )
        per_party: dict[str, dict[str, float]] = {}
        pos = np.zeros(AUC_BINS, dtype=np.int64)
        neg = np.zeros(AUC_BINS, dtype=np.int64)
        n = loss = correct = 0.0
        for _proxy, res in results:
            mm = res.metrics
            per_party[str(mm["party"])] = {
                "auc": _r(mm["auc"]),
                "accuracy": _r(mm["accuracy"]),
                "log_loss": _r(mm["log_loss"]),
                "rows": int(res.num_examples),
            }
            pos += np.frombuffer(mm["hist_pos"], dtype=np.int64)
            neg += np.frombuffer(mm["hist_neg"], dtype=np.int64)
            n += res.num_examples
            loss += res.loss * res.num_examples
            correct += int(mm["correct"])
        pooled = {
            "auc": _r(auc_from_histograms(pos, neg)),
            "accuracy": _r(correct / n) if n else None,
            "log_loss": _r(loss / n) if n else None,
            "rows": int(n),
        }
        self.history.append(
            {
                "round": server_round,
                "parties": active,
                "seconds": round(time.perf_counter() - self._t0, 4),
                "pooled": pooled,
                "per_party": dict(sorted(per_party.items())),
            }
        )
        return pooled["log_loss"], {}


def _r(v: Any) -> float | None:
    v = float(v)
    return None if math.isnan(v) else round(v, 6)


def _reason(f: Any) -> str:
    if isinstance(f, BaseException):
        return f"{type(f).__name__}: {f}"[:300]
    _proxy, res = f
    return str(getattr(res, "status", res))[:300]


server_app = ServerApp()


@server_app.main()
def server_main(grid: Grid, context: Context) -> None:
    """The platform's side: FedAvg rounds over SecAgg+, then the JSON result file."""
    result_path = Path(str(_cfg(context, "result-path", "fl_result.json")))
    features = _features(context)
    rounds = int(_cfg(context, "num-rounds", 10))
    n_parties = int(_cfg(context, "num-parties", 3))
    min_parties = int(_cfg(context, "min-parties", n_parties))
    timeout = float(_cfg(context, "round-timeout", 60.0))
    strategy = FedAvgLogReg(
        n_parties=n_parties,
        min_parties=min_parties,
        on_dropout=str(_cfg(context, "on-dropout", "fail")),
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=min_parties,
        min_evaluate_clients=min_parties,
        min_available_clients=min_parties,
        initial_parameters=ndarrays_to_parameters([np.zeros(len(features)), np.zeros(1)]),
        on_fit_config_fn=lambda rnd: {"server_round": rnd},
        accept_failures=True,
    )
    legacy = LegacyContext(
        context=context,
        config=ServerConfig(num_rounds=rounds, round_timeout=timeout),
        strategy=strategy,
    )
    secagg = bool(_cfg(context, "secure-aggregation", True))
    timed = _TimedGrid(
        grid,
        timeout,
        str(_cfg(context, "record-dir", "")),
        float(_cfg(context, "poll-seconds", 0.1)),
    )
    strategy.grid = timed
    t0 = time.perf_counter()
    doc: dict[str, Any] = {"features": features, "secure_aggregation": secagg}
    try:
        fit_workflow = (
            SecAggPlusWorkflow(
                # every party's key is split among all parties; any n − 1 shares rebuild it,
                # so one party may drop out of a round and the sum is still unmasked
                num_shares=n_parties,
                reconstruction_threshold=max(2, n_parties - 1),
                max_weight=float(_cfg(context, "max-weight", 1000.0)),
                clipping_range=float(_cfg(context, "clipping-range", 8.0)),
                timeout=timeout,
            )
            if secagg
            else None
        )
        workflow = DefaultWorkflow(fit_workflow=fit_workflow)
        end = time.monotonic() + timeout
        while len(list(grid.get_node_ids())) < n_parties:
            if time.monotonic() > end:
                raise _Abort(
                    f"only {len(list(grid.get_node_ids()))} of {n_parties} parties connected "
                    f"within {timeout:g} s (参与方未就绪)"
                )
            time.sleep(0.1)
        workflow(timed, legacy)
        if strategy.final is None or len(strategy.history) < rounds:
            raise _Abort(
                f"training stopped after {len(strategy.history)} of {rounds} round(s) "
                f"({'; '.join(strategy.failures[-3:]) or 'no aggregate'})"
            )
        w, b = parameters_to_ndarrays(strategy.final)
        doc.update(
            status="ok",
            coefficients=dict(zip(features, [round(float(v), 8) for v in w], strict=True)),
            intercept=round(float(b[0]), 8),
        )
    except _Abort as exc:
        doc.update(status="failed", reason=str(exc))
    except Exception as exc:
        doc.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:500])
    doc.update(
        rounds=len(strategy.history),
        seconds=round(time.perf_counter() - t0, 4),
        history=strategy.history,
        failures=strategy.failures,
    )
    if doc["status"] == "ok":
        last = strategy.history[-1]
        doc["pooled"], doc["per_party"] = last["pooled"], last["per_party"]
        doc["rounds_per_second"] = round(len(strategy.history) / doc["seconds"], 4)
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, ensure_ascii=False, sort_keys=True), encoding="utf-8")
    os.replace(tmp, result_path)
