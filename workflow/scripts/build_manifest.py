"""Rule `manifest`: scan, decode and check one category's images; write its manifest."""

from diffad.data import build_manifest, write_manifest
from diffad.logs import job_header, log_to

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))) as log:
    manifest = build_manifest(sm.wildcards.dataset, sm.params.dataset, sm.wildcards.category)
    write_manifest(manifest, sm.output[0])
    log.info("wrote %s", sm.output[0])
