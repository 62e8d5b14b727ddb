"""Rule `download`: a dataset's archive from its official URL, checked and extracted."""

from diffad.data import download_dataset
from diffad.io import write_json
from diffad.logs import job_header, log_to

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))):
    download_dataset(sm.wildcards.dataset, sm.params.dataset)
    write_json({"dataset": sm.wildcards.dataset, "root": sm.params.dataset["root"]},
               sm.output[0])
