# The score tier and one row of metrics per (method, dataset, category).


rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        PATHS.metrics,
    log:
        PATHS.log("evaluate", "method", "dataset", "category"),
    group:
        "score"
    conda:
        "../envs/data.yaml"
    threads: PLAN.threads("evaluate")
    resources:
        **PLAN.resources("evaluate"),
    params:
        method=get_score_params,
        image_size=get_image_size,
    script:
        "../workflow/scripts/evaluate.py"
