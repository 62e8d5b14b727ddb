"""Rule `infer`: every detector on one category's test images, with its trained model."""

from pathlib import Path

import torch

from diffad.logs import job_header, log_to
from diffad.runtime import make_runtime
from diffad.stages import infer

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))):
    torch.set_num_threads(sm.threads)
    runtime = make_runtime({**sm.config["runtime"], "seed": sm.params.seed}, sm.params.image_size)
    infer(sm.params.method, sm.input.manifests, sm.wildcards.category,
          str(Path(sm.input.model).parent), dict(sm.output.items()), runtime,
          sm.params.artefacts, sm.params.train_scores)
