"""Rule `manifest`: download if configured, scan, verify and write the manifest."""

from diffad.data import build_manifest, write_manifest
from diffad.logs import log_to

with log_to(snakemake.log[0]):  # noqa: F821 (injected by Snakemake)
    manifest = build_manifest(snakemake.wildcards.dataset, snakemake.params.dataset)  # noqa: F821
    write_manifest(manifest, snakemake.output[0])  # noqa: F821
