# One row of metrics per (method, dataset, category).


rule evaluate:
    input:
        scores="results/scores/{method}/{dataset}/{category}.parquet",
        maps="results/scores/{method}/{dataset}/{category}.maps.npy",
        model=get_model,
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
        image_size=get_image_size,
    script:
        "../workflow/scripts/evaluate.py"
