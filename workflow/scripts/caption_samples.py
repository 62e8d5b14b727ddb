"""Rule `caption_samples`: a page of sample captions per category for the report."""

import pandas as pd

from diffad.io import atomic_path
from diffad.logs import job_header, log_to
from diffad.report.captions import captions_page

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))) as log:
    tables = [pd.read_parquet(path) for path in sm.input]
    page = captions_page(sm.wildcards.captioner, sm.wildcards.dataset, tables)
    with atomic_path(sm.output[0]) as tmp:
        tmp.write_text(page)
    log.info("%d caption tables: wrote %s", len(tables), sm.output[0])
