"""Rule `evaluate`: the metrics of one (method, dataset, category)."""

from pathlib import Path

from diffad.evaluation import evaluate
from diffad.io import write_parquet
from diffad.logs import log_to

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0]):
    labels = {k: sm.wildcards[k] for k in ("method", "dataset", "category")}
    metrics = evaluate(sm.input.scores, sm.input.maps, str(Path(sm.input.model).parent),
                       sm.params.image_size, labels)
    print(metrics.T.to_string())
    write_parquet(metrics, sm.output[0])
