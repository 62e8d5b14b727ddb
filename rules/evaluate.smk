# The score tier and one row of metrics per (method, dataset, category).


rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        "results/metrics/{method}/{dataset}/{category}.parquet",
    log:
        "logs/evaluate/{method}/{dataset}/{category}.log",
    params:
        method=get_method,
        image_size=get_image_size,
    group:
        "score"
    threads: get_resource("evaluate", "cpus_per_task")
    resources:
        mem_mb=get_resource("evaluate", "mem_mb"),
        runtime=get_resource("evaluate", "runtime"),
        cpus_per_task=get_resource("evaluate", "cpus_per_task"),
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/evaluate.py"
