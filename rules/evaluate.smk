# The score tier and one row of metrics per (method, dataset, category).


rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        "results/metrics/{method}/{dataset}/{category}.parquet",
    log:
        "logs/evaluate/{method}/{dataset}/{category}.log",
    group:
        "score"
    conda:
        "../envs/data.yaml"
    threads: get_resource("evaluate", "cpus_per_task")
    resources:
        mem_mb=get_resource("evaluate", "mem_mb"),
        runtime=get_resource("evaluate", "runtime"),
        cpus_per_task=get_resource("evaluate", "cpus_per_task"),
    params:
        method=get_method,
        image_size=get_image_size,
    script:
        "../workflow/scripts/evaluate.py"
