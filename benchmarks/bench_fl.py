"""Benchmark: federated logistic regression, 3 parties × 100,000 rows, vs centralized training.

Run: ``.venv/bin/python benchmarks/bench_fl.py [--rows 100000] [--rounds 3]``. Prints one JSON
line.

Federated: :func:`sandbox._fl.run_federated` — a loopback Flower 1.32 deployment (SuperLink +
3 SuperNodes, each party a separate process reading only its own Parquet file), FedAvg over
SecAgg+, ``--local-epochs`` full-batch gradient steps per round and party, hold-out evaluation
every round. Wall time counts from the first process start to the result (startup included);
``rounds_per_second`` is the ServerApp's rounds over its own training time. Centralized: the
same gradient steps (``rounds × local_epochs``) on the pooled training rows in one process,
evaluated on the pooled hold-out. Synthetic rows: 8 Gaussian features, a planted logistic model.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sandbox._fl import run_federated
from sandbox._fl_apps import local_train, metrics, read_party_table, sigmoid, split_holdout

D = 8


def make_parties(root: Path, rows: int, seed: int = 5) -> dict[str, Path]:
    """Three folders ``party_<k>/party.parquet`` of ``rows`` rows × (f0…f7, label)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.8, D)
    out = {}
    for i, k in enumerate(("A", "B", "C")):
        x = rng.normal(0.1 * i, 1.0, (rows, D))
        y = (rng.random(rows) < sigmoid(x @ w - 0.3)).astype(np.float64)
        d = root / f"party_{k}"
        d.mkdir(parents=True)
        cols = {f"f{j}": x[:, j] for j in range(D)}
        cols["label"] = y
        pq.write_table(pa.table(cols), d / "party.parquet")
        out[k] = d
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--local-epochs", type=int, default=20)
    args = ap.parse_args()
    feats = [f"f{j}" for j in range(D)]
    with tempfile.TemporaryDirectory() as tmp:
        parties = make_parties(Path(tmp) / "data", args.rows)
        res = run_federated(
            parties,
            features=feats,
            work_dir=Path(tmp) / "run",
            rounds=args.rounds,
            local_epochs=args.local_epochs,
            learning_rate=1.0,
            l2=0.0,
            round_timeout=120,
            time_limit=580,
        )
        assert res["status"] == "ok", res
        t0 = time.perf_counter()
        xs, ys, xh, yh = [], [], [], []
        for d in parties.values():
            x, y = read_party_table(str(d), feats, "label")
            hold = split_holdout(len(y), 0.2, 0)
            xs.append(x[~hold]), ys.append(y[~hold]), xh.append(x[hold]), yh.append(y[hold])
        w, b = local_train(
            np.vstack(xs),
            np.concatenate(ys),
            np.zeros(D),
            0.0,
            epochs=args.rounds * args.local_epochs,
            lr=1.0,
            l2=0.0,
        )
        central = metrics(np.concatenate(yh), sigmoid(np.vstack(xh) @ w + b))
        central_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "parties": 3,
                "rows_per_party": args.rows,
                "rounds": res["rounds"],
                "local_epochs": args.local_epochs,
                "secure_aggregation": res["secure_aggregation"],
                "fl_wall_seconds": res["wall_seconds"],
                "fl_training_seconds": res["seconds"],
                "fl_rounds_per_second": res["rounds_per_second"],
                "fl_pooled": res["pooled"],
                "central_seconds": round(central_s, 3),
                "central": {k: round(v, 6) for k, v in central.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
