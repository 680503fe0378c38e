"""Fake computations for runner tests (imported by the spawned worker by module:qualname)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from sandbox import Computation, Output, register_computation


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = 0.0
    marker: str | None = None  # sleep only while this file does not exist yet (first run)


@register_computation
class Sleep(Computation):
    """Sleeps (first run only when ``marker`` is set), then returns the row count."""

    name = "test_sleep"
    kind = "aggregate"
    Params = SleepParams

    @classmethod
    def columns(cls, params, contract):
        return ["district"]

    @classmethod
    def run(cls, ctx):
        p = ctx.params
        if p.marker is None or not Path(p.marker).exists():
            if p.marker is not None:
                Path(p.marker).write_text("started")
            time.sleep(p.seconds)
        return Output(json.dumps({"rows": ctx.table.num_rows}).encode(), "application/json")


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@register_computation
class Hog(Computation):
    """Allocates far more memory than the limit."""

    name = "test_hog"
    Params = NoParams

    @classmethod
    def run(cls, ctx):
        blob = bytearray(8 << 30)
        return Output(bytes(blob[:1]), "application/octet-stream")


@register_computation
class Die(Computation):
    """The worker process dies without a word."""

    name = "test_die"
    Params = NoParams

    @classmethod
    def run(cls, ctx):
        os._exit(9)


@register_computation
class Crash(Computation):
    """Fails with a third-party-style error whose message holds a cell value."""

    name = "test_crash"
    Params = NoParams

    @classmethod
    def run(cls, ctx):
        raise ValueError(f"bad cell {ctx.table.num_rows}:91350100M000100Y3Y")


@register_computation
class LeakRows(Computation):
    """Tries to release the identifier column itself (must be stopped by disclosure control)."""

    name = "test_leak"
    Params = NoParams

    @classmethod
    def columns(cls, params, contract):
        return ["taxpayer_id"]

    @classmethod
    def run(cls, ctx):
        t = pa.table({"x": ctx.table["taxpayer_id"]})
        return Output(json.dumps(t.to_pylist()).encode(), "application/json", table=t)
