"""Rule `infer`: score one category's test images with its trained model."""

from pathlib import Path

import torch

from diffad.logs import log_to
from diffad.stages import infer, make_runtime

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    torch.set_num_threads(sm.threads)
    runtime = make_runtime({**sm.config["runtime"], "seed": sm.params.seed}, sm.params.image_size)
    infer(sm.params.method, sm.input.manifest, sm.wildcards.category,
          str(Path(sm.input.model).parent), sm.output.scores, sm.output.maps, runtime)
