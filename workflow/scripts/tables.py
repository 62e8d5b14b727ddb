"""Rule `build_tables`: the experiment's tables in Markdown, LaTeX, HTML and CSV."""

from diffad.logs import job_header, log_to
from diffad.report.tables import build_table, read_metrics, read_reference, write_tables

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))) as log:
    table = build_table(read_metrics(sm.input.metrics), read_reference(sm.input.reference),
                        sm.params.references, sm.params.best_of, sm.params.categories,
                        seeds=sm.params.seeds)
    write_tables(table, md=sm.output.md, csv=sm.output.csv, tex=sm.output.tex,
                 html=sm.output.html, title=sm.params.title, grids=sm.params.grids)
    log.info("%d metrics files, %d rows: wrote %s", len(sm.input.metrics), len(table),
             ", ".join(sm.output))
