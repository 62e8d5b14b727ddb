"""Rule `cost`: a rehearsal's measured costs and the estimate of the full reproduction."""

from diffad.io import atomic_path
from diffad.logs import job_header, log_to
from diffad.plan import Plan
from diffad.plan.cost import cost_report, cost_table

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))) as log:
    plan = Plan.from_config(sm.config)
    table = cost_table(plan)
    with atomic_path(sm.output.csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(sm.output.md) as tmp:
        tmp.write_text(cost_report(table, plan))
    log.info("wrote %s and %s", sm.output.md, sm.output.csv)
