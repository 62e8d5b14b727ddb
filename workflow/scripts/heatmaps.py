"""Rule `heatmaps`: example input / ground truth / anomaly map panels of a variant."""

from diffad.evaluation import apply_score_tier
from diffad.logs import job_header, log_to
from diffad.report.figures import plot_heatmaps

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))) as log:
    outputs, scored = apply_score_tier(sm.params.method, sm.input.scores, sm.input.maps,
                                       sm.input.train_scores)
    title = f"{sm.wildcards.method} / {sm.wildcards.dataset} / {sm.wildcards.category}"
    plot_heatmaps(outputs.table, scored, sm.params.image_size, sm.output[0], title)
    log.info("wrote %s", sm.output[0])
