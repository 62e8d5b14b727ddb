"""Rule `train`: fit one method on one category's (or dataset's) normal images."""

from pathlib import Path

import torch

from diffad.logs import log_to
from diffad.stages import make_runtime, train

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    torch.set_num_threads(sm.threads)
    runtime = make_runtime({**sm.config["runtime"], "seed": sm.params.seed}, sm.params.image_size)
    train(sm.params.method, sm.input.manifest, sm.wildcards.category,
          str(Path(sm.output.metadata).parent), runtime)
