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
    conda:
        "../envs/data.yaml"
    params:
        image_size=get_image_size,
    script:
        "../workflow/scripts/evaluate.py"
