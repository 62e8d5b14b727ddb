"""Rule `fetch_weights`: one pretrained weight source into the local cache."""

from pathlib import Path

from diffad.logs import exit_job, job_header, log_to
from diffad.plan import Plan
from diffad.weights import fetch_weights

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))):
    # The plan registers a rehearsal's random-weight sources in place of the real ones.
    Plan.from_config(sm.config)
    fetch_weights(sm.wildcards.name, Path(sm.output[0]).parent.parent)
exit_job()  # every output is written: skip the interpreter teardown (about 1.3 s)
