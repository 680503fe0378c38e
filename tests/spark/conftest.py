"""A Spark ``local[2]`` session per test module, stopped with its JVM at the end of the module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def spark():
    """Start ``local[2]``; on teardown assert the context is gone and the gateway JVM exited."""
    from pyspark import SparkContext

    from pipelines._spark import spark_session

    with spark_session("local[2]", app_name="govdx-tests") as session:
        gateway = SparkContext._gateway
        yield session
    assert SparkContext._active_spark_context is None
    assert SparkContext._gateway is None
    assert gateway.proc.poll() is not None, "the py4j gateway JVM is still running"
