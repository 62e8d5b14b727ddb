"""Rule `build_tables`: the experiment's table in Markdown, CSV and LaTeX."""

from diffad.logs import log_to
from diffad.report.tables import build_table, read_metrics, read_reference, write_tables

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    table = build_table(read_metrics(sm.input.metrics), read_reference(sm.input.reference),
                        sm.params.references, sm.params.best_of)
    write_tables(table, md=sm.output.md, csv=sm.output.csv, tex=sm.output.tex,
                 title=sm.wildcards.experiment, grids=sm.params.grids)
