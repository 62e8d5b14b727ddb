"""Rule `metrics_chart`: per-category dot plots of the main metrics."""

from diffad.logs import job_header, log_to
from diffad.report.figures import plot_metrics
from diffad.report.tables import read_metrics

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))) as log:
    plot_metrics(read_metrics(sm.input.metrics), sm.output[0], variants=sm.params.variants)
    log.info("wrote %s", sm.output[0])
