# Download (where the dataset has an official URL) and the manifest of every image.


rule manifest:
    output:
        "results/data/{dataset}/manifest.parquet",
    log:
        "logs/data/{dataset}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        dataset=lambda wildcards: DATASETS[wildcards.dataset],
    script:
        "../workflow/scripts/build_manifest.py"
