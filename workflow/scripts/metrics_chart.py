"""Rule `metrics_chart`: per-category bar charts of the main metrics."""

from diffad.logs import log_to
from diffad.report.figures import plot_metrics
from diffad.report.tables import read_metrics

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    plot_metrics(read_metrics(sm.input.metrics), sm.output[0])
