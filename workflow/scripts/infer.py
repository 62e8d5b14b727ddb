"""Rule `infer`: every detector on one category's test images, with its trained model."""

import torch

from diffad.logs import job_header, log_to
from diffad.paths import Paths
from diffad.plan import Plan
from diffad.runtime import make_runtime
from diffad.stages import infer

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))):
    torch.set_num_threads(sm.threads)
    w = sm.wildcards
    job = Plan.from_config(sm.config).job(w.method, w.dataset, w.category, "train", "infer")
    infer(job.params, sm.input.manifests, w.category, Paths.folder(sm.input.model),
          dict(sm.output.items()), make_runtime(job.runtime, job.image_size), job.artefacts,
          sm.params.train_scores)
