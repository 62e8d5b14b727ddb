"""Rule `captions` / `test_captions`: a vision-language model describes one category's images."""

import torch

from diffad.captions import CaptionerParams
from diffad.captions.table import caption_images
from diffad.data import read_manifests
from diffad.device import seed_everything
from diffad.logs import exit_job, job_header, log_to
from diffad.plan import Plan
from diffad.runtime import make_runtime
from diffad.stages import select

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))):
    # The plan registers a rehearsal's random-weight sources in place of the real ones.
    Plan.from_config(sm.config)
    torch.set_num_threads(sm.threads)
    runtime = make_runtime({**sm.config["runtime"], "seed": sm.params.seed}, 0)
    seed_everything(runtime.seed)
    category = sm.wildcards.category
    rows = select(read_manifests(sm.input.manifests), category, sm.params.split,
                  {category: sm.input.manifests[0]})
    caption_images(sm.wildcards.captioner, CaptionerParams(**sm.params.captioner), rows,
                   runtime, sm.output[0])
exit_job()  # every output is written: skip the interpreter teardown (about 1.3 s)
