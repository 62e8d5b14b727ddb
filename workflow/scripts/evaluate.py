"""Rule `evaluate`: the score tier and the metrics of one (method, dataset, category)."""

from pathlib import Path

from diffad.evaluation import evaluate
from diffad.io import provenance, write_parquet
from diffad.logs import job_header, log_to

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))):
    labels = {k: sm.wildcards[k] for k in ("method", "dataset", "category")}
    metrics = evaluate(sm.params.method, sm.input.scores, sm.input.maps, sm.input.train_scores,
                       str(Path(sm.input.model).parent), sm.params.image_size, labels)
    print(metrics.iloc[0].to_string())
    # The library versions that shape the numbers, in the file's metadata.
    write_parquet(metrics, sm.output[0], provenance(sm.params.method))
