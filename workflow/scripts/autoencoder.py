"""Rule `autoencoder`: finetune (or copy) one dataset's autoencoder on its normal images."""

from pathlib import Path

import torch

from diffad.autoencoder import AutoencoderParams, finetune_autoencoder
from diffad.data import read_manifests
from diffad.device import seed_everything
from diffad.io import provenance, write_json
from diffad.logs import job_header, log_to
from diffad.runtime import make_runtime
from diffad.stages import by_category, select
from diffad.training import TrainingSession

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))):
    torch.set_num_threads(sm.threads)
    params = AutoencoderParams(**sm.params.autoencoder)
    runtime = make_runtime({**sm.config["runtime"], "seed": sm.params.seed}, params.resolution)
    seed_everything(runtime.seed)
    manifests = by_category(sm.input.manifests)
    rows = select(read_manifests(manifests.values()), sm.wildcards.category, "train", manifests)
    folder = Path(sm.output.metadata).parent
    record = finetune_autoencoder(params, sm.wildcards.autoencoder, rows, runtime, folder,
                                  TrainingSession(checkpoint_dir=folder))
    # Written last: its presence says the folder is complete.
    write_json({**provenance(params.model_dump(mode="json"), runtime.seed), **record},
               sm.output.metadata)
