"""Great Expectations 1.x wiring: an in-process ephemeral context, the govdx custom expectation,
suites built from contracts, validation runs, and Data Docs.

What runs through GX (see docs/quality.md): every rule of a contract is one expectation of the
dataset's :class:`great_expectations.ExpectationSuite`, and the suite is run by a
:class:`great_expectations.ValidationDefinition` on a pandas batch (``add_pandas`` data source,
whole-dataframe batch definition) with ``result_format`` ``COMPLETE``; the failing row indices
that go to quarantine are GX's ``unexpected_index_list``.

* Steward expectations (``quality.expectations``) run as written, natively in GX, on the real
  column values.
* Built-in rules (required, PK uniqueness, element checks such as GB 11643 / GB 32100 check
  characters, GB/T 2260 region list, phone, date, amount, cross-field consistency) are computed
  vectorized over Arrow arrays (numpy / ``pyarrow.compute``; GX on pandas is ~10× slower for
  them) into one boolean column per rule, and GX validates those columns with the custom
  expectation ``expect_column_values_to_pass_govdx_check`` (:class:`ExpectColumnValuesToPassGovdxCheck`),
  which carries the rule id, field, dimension and the standard it implements.

No network: analytics are off (``GX_ANALYTICS_ENABLED=false`` and the project config), progress
bars are off, the context is ephemeral (in memory); Data Docs are written only when asked, to a
local folder.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any, ClassVar

from quality._gxenv import import_gx

gx = import_gx()

from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.execution_engine import (  # noqa: E402
    PandasExecutionEngine,
    SparkDFExecutionEngine,
)
from great_expectations.expectations.expectation import ColumnMapExpectation  # noqa: E402
from great_expectations.expectations.metrics.map_metric_provider import (  # noqa: E402
    ColumnMapMetricProvider,
    column_condition_partial,
)

__all__ = [
    "GOVDX_CHECK",
    "SPARK_DATASOURCE",
    "ExpectColumnValuesToPassGovdxCheck",
    "gx_context",
    "run_suite",
    "write_data_docs",
]

GOVDX_CHECK = "expect_column_values_to_pass_govdx_check"
"""Snake-case name of :class:`ExpectColumnValuesToPassGovdxCheck` in GX's registry."""

SPARK_DATASOURCE = "govdx_spark"
"""Name prefix of the GX Spark data sources (``context.data_sources.add_spark``) of
:func:`run_suite`: one per suite, ``govdx_spark:<suite name>``."""


class ColumnValuesGovdxCheckPassed(ColumnMapMetricProvider):
    """Row-level metric: the precomputed govdx check column is true (the row passes the rule)."""

    condition_metric_name = "column_values.govdx_check_passed"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: Any, **kwargs: Any) -> Any:
        return column.astype(bool)

    @column_condition_partial(engine=SparkDFExecutionEngine)
    def _spark(cls, column: Any, **kwargs: Any) -> Any:
        return column.cast("boolean")


class ExpectColumnValuesToPassGovdxCheck(ColumnMapExpectation):
    """Expect each value of a govdx check column to be true (the row passed the rule).

    The check column holds the outcome of one built-in govdx rule, computed vectorized over the
    Arrow data (see :mod:`quality._rules`). The arguments describe the rule for the result
    document and Data Docs.

    Args:
        column: the check column (``__check__<n>``).
        rule: rule id, e.g. ``legal_rep_id.resident_id.check_char``.
        field: the contract field(s) the rule reads.
        dimension: GB/T 36344 dimension (规范性, 完整性, 准确性, 一致性, 时效性, 唯一性).
        reason: what failing means, English and Chinese.
        standard: the source standard or the GX expectation it is equivalent to.
    """

    map_metric = "column_values.govdx_check_passed"
    rule: str = ""
    field: str = ""
    dimension: str = ""
    reason: str = ""
    standard: str = ""
    success_keys: ClassVar[tuple[str, ...]] = ("mostly",)
    library_metadata: ClassVar[dict[str, Any]] = {"tags": ["govdx"], "contributors": ["govdx"]}


@functools.lru_cache(maxsize=1)
def gx_context() -> Any:
    """The process's ephemeral GX Data Context (in memory, analytics and progress bars off)."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    ctx = gx.get_context(mode="ephemeral", project_config=config)
    ctx.data_sources.add_pandas("govdx")
    return ctx


def run_suite(
    name: str, frame: Any, expectations: list[Any], *, index_column: str | None = None
) -> Any:
    """Validate a dataframe against a suite of expectations through a ValidationDefinition.

    A pandas frame runs on the ``add_pandas`` data source (``govdx``); a Spark DataFrame runs on
    GX's Spark data source (``add_spark``, ``SparkDFExecutionEngine``; named
    :data:`SPARK_DATASOURCE` ``:<name>``) of the active Spark session; whole-dataframe batch
    definition in both cases.

    Args:
        name: suite / asset name (the dataset code); replaced if it exists.
        frame: ``pandas.DataFrame[rows × columns]`` with a RangeIndex (index = row position), or
            a ``pyspark.sql.DataFrame[rows × columns]`` holding ``index_column``.
        expectations: GX expectation objects.
        index_column: Spark only: the int64 column that identifies a row (GX's
            ``unexpected_index_column_names``; Spark rows have no index).

    Returns:
        ``great_expectations.core.ExpectationSuiteValidationResult`` in ``COMPLETE`` format
        (``unexpected_index_list`` holds failing row positions per expectation; on Spark, dicts
        ``{index_column: value}``).

    Raises:
        ValueError: a Spark frame without ``index_column``.
    """
    ctx = gx_context()
    result_format: dict[str, Any] = {
        "result_format": "COMPLETE",
        "include_unexpected_rows": False,
        "partial_unexpected_count": 5,
    }
    # the old definition first: getting it (to delete it) resolves its data source and asset
    for store, key in ((ctx.validation_definitions, name), (ctx.suites, name)):
        with contextlib.suppress(Exception):  # absent entry
            store.delete(key)
    spark = not hasattr(frame, "iloc")  # pandas frames have .iloc, Spark DataFrames do not
    if spark:
        if not index_column:
            raise ValueError("run_suite on a Spark DataFrame needs index_column")
        result_format["unexpected_index_column_names"] = [index_column]
        # a fresh data source per run (its execution engine holds the Spark session, which may
        # have been stopped and started again since the last run), one per suite so that no
        # other suite's validation definition loses its data source
        ds_name = f"{SPARK_DATASOURCE}:{name}"
        with contextlib.suppress(Exception):  # absent data source
            ctx.data_sources.delete(ds_name)
        ds = ctx.data_sources.add_spark(ds_name)  # persists the batch: the caller unpersists
    else:
        ds = ctx.data_sources.get("govdx")
    with contextlib.suppress(Exception):  # absent asset
        ds.delete_asset(name)
    batch_def = ds.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=list(expectations)))
    vd = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_def, suite=suite)
    )
    return vd.run(batch_parameters={"dataframe": frame}, result_format=result_format)


def write_data_docs(validation_result: Any, folder: Path) -> Path:
    """Render GX Data Docs of a validation result into ``folder`` (local files, no network).

    Args:
        validation_result: an ``ExpectationSuiteValidationResult`` of :func:`run_suite`.
        folder: target folder (created).

    Returns:
        Path of the Data Docs ``index.html``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ctx = gx_context()
    site = "govdx_" + str(abs(hash(str(folder.resolve()))))
    if site not in (ctx.config.data_docs_sites or {}):
        ctx.add_data_docs_site(
            site,
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(folder.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    from great_expectations.data_context.types.resource_identifiers import (
        ValidationResultIdentifier,
    )

    ident = ValidationResultIdentifier.from_object(validation_result)
    ctx.validation_results_store.set(ident, validation_result)
    ctx.build_data_docs(site_names=[site], resource_identifiers=[ident])
    return folder / "index.html"
