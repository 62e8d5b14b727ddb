"""Rule `heatmaps`: example input / ground truth / anomaly map panels."""

from diffad.logs import log_to
from diffad.report.figures import plot_heatmaps

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    title = f"{sm.wildcards.method} / {sm.wildcards.dataset} / {sm.wildcards.category}"
    plot_heatmaps(sm.input.scores, sm.input.maps, sm.params.image_size, sm.output[0], title)
