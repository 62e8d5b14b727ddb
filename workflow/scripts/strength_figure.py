"""Rule `strength_figure`: reconstructions at increasing strength (paper 000's Figure 4.1)."""

from pathlib import Path

import torch

from diffad.logs import job_header, log_to
from diffad.report.figures import STRENGTHS, plot_strengths
from diffad.runtime import make_runtime
from diffad.stages import strength_reconstructions

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))) as log:
    torch.set_num_threads(sm.threads)
    runtime = make_runtime({**sm.config["runtime"], "seed": sm.params.seed}, sm.params.image_size)
    images, labels, reconstructions = strength_reconstructions(
        sm.params.method, sm.input.manifests, sm.wildcards.category,
        str(Path(sm.input.model).parent), runtime, sm.params.artefacts,
        STRENGTHS)
    title = f"{sm.wildcards.method} / {sm.wildcards.dataset} / {sm.wildcards.category}"
    plot_strengths(images, labels, reconstructions, title, sm.output[0])
    log.info("wrote %s", sm.output[0])
