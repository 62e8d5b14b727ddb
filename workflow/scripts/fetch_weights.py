"""Rule `fetch_weights`: one backbone's pretrained weights into the local cache."""

from pathlib import Path

from diffad.logs import log_to
from diffad.models.weights import fetch_weights

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    folder = Path(snakemake.output.weights).parent  # noqa: F821
    fetch_weights(snakemake.wildcards.backbone, folder.parent)  # noqa: F821
