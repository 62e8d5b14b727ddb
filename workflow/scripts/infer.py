"""Rule `infer` / `infer_with_strengths`: every detector on one category's test images with
its trained model (and, for the second, reconstructions at increasing strength)."""

import torch

from diffad.logs import exit_job, job_header, log_to
from diffad.paths import Paths
from diffad.plan import Plan
from diffad.report.figures import STRENGTHS, plot_strengths
from diffad.runtime import make_runtime
from diffad.stages import infer, strength_reconstructions

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))) as log:
    torch.set_num_threads(sm.threads)
    w = sm.wildcards
    job = Plan.from_config(sm.config).job(w.method, w.dataset, w.category, "train", "infer")
    model, rows = infer(job.params, sm.input.manifests, w.category, Paths.folder(sm.input.model),
                  dict(sm.output.items()), make_runtime(job.runtime, job.image_size),
                  job.artefacts, sm.params.train_scores)
    if "strengths" in sm.output.keys():
        images, labels, reconstructions = strength_reconstructions(model, rows, STRENGTHS)
        title = f"{w.method} / {w.dataset} / {w.category}"
        plot_strengths(images, labels, reconstructions, title, sm.output.strengths)
        log.info("wrote %s", sm.output.strengths)
exit_job()  # every output is written: skip the interpreter teardown (about 1.3 s)
