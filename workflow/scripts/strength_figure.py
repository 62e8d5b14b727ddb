"""Rule `strength_figure`: reconstructions at increasing strength (paper 000's Figure 4.1)."""

import torch

from diffad.logs import job_header, log_to
from diffad.paths import Paths
from diffad.plan import Plan
from diffad.report.figures import STRENGTHS, plot_strengths
from diffad.runtime import make_runtime
from diffad.stages import strength_reconstructions

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))) as log:
    torch.set_num_threads(sm.threads)
    w = sm.wildcards
    job = Plan.from_config(sm.config).job(w.method, w.dataset, w.category, "train", "infer")
    images, labels, reconstructions = strength_reconstructions(
        job.params, sm.input.manifests, w.category, Paths.folder(sm.input.model),
        make_runtime(job.runtime, job.image_size), job.artefacts, STRENGTHS)
    title = f"{w.method} / {w.dataset} / {w.category}"
    plot_strengths(images, labels, reconstructions, title, sm.output[0])
    log.info("wrote %s", sm.output[0])
