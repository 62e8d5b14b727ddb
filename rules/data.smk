# Download (where the dataset has an official URL) and the manifest of every image.


rule manifest:
    output:
        "results/data/{dataset}/manifest.parquet",
    log:
        "logs/data/{dataset}.log",
    params:
        dataset=lambda wildcards: DATASETS[wildcards.dataset],
    localrule: True
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/build_manifest.py"
