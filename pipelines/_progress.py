"""Progress reporting from pipeline steps to whoever runs them (CLI display, logs).

Steps call :func:`report`; an entry point installs a reporter with :func:`use_reporter`. Airflow's
``dag.test()`` runs tasks in the calling process, so the CLI's progress display sees them; in a
real deployment the default reporter logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Reporter = Callable[[str, str], None]
_log = logging.getLogger("govdx.pipeline")


def _log_reporter(step: str, message: str) -> None:
    _log.info("%s: %s", step, message)


_reporter: Reporter = _log_reporter


def report(step: str, message: str) -> None:
    """Tell the current reporter that ``step`` made progress (``message`` is human text)."""
    _reporter(step, message)


@contextmanager
def use_reporter(reporter: Reporter) -> Iterator[None]:
    """Install ``reporter`` for the duration of a ``with`` block."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous
