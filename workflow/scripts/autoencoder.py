"""Rule `autoencoder`: finetune (or copy) one dataset's autoencoder on its normal images."""

from pathlib import Path

import torch

from diffad.autoencoder import finetune_autoencoder
from diffad.data import read_manifests
from diffad.device import peak_memory, seed_everything
from diffad.io import provenance, write_json
from diffad.logs import exit_job, job_header, log_to
from diffad.paths import Paths
from diffad.plan import Plan
from diffad.runtime import make_runtime
from diffad.stages import by_category, select
from diffad.training import TrainingSession

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))):
    torch.set_num_threads(sm.threads)
    w = sm.wildcards
    plan = Plan.from_config(sm.config)
    params = plan.autoencoders[w.autoencoder]
    runtime = make_runtime(plan.runtime_settings(), params.resolution)
    seed_everything(runtime.seed)
    manifests = by_category(sm.input.manifests)
    rows = select(read_manifests(manifests.values()), w.category, "train", manifests)
    folder = Path(Paths.folder(sm.output.metadata))
    record = finetune_autoencoder(params, w.autoencoder, rows, runtime, folder,
                                  TrainingSession(checkpoint_dir=folder))
    # Written last: its presence says the folder is complete.
    write_json({**provenance(params.model_dump(mode="json"), runtime.seed), **record,
                **peak_memory()}, sm.output.metadata)
exit_job()  # every output is written: skip the interpreter teardown (about 1.3 s)
