"""Rule `train`: fit one method on one category's (or dataset's) normal images."""

import torch

from diffad.logs import exit_job, job_header, log_to
from diffad.paths import Paths
from diffad.plan import Plan
from diffad.runtime import make_runtime
from diffad.stages import train

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))):
    torch.set_num_threads(sm.threads)
    w = sm.wildcards
    job = Plan.from_config(sm.config).job(w.method, w.dataset, w.category, "train")
    train(job.params, sm.input.manifests, w.category, Paths.folder(sm.output.metadata),
          make_runtime(job.runtime, job.image_size), job.artefacts)
exit_job()  # every output is written: skip the interpreter teardown (about 1.3 s)
