# Download (where the dataset has an official URL), then one manifest per category.


rule download:
    output:
        "results/data/{dataset}/download.json",
    log:
        "logs/data/{dataset}_download.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        dataset=get_dataset_params,
    script:
        "../workflow/scripts/download.py"


rule manifest:
    input:
        get_download,
    output:
        "results/data/{dataset}/{category}.parquet",
    log:
        "logs/data/{dataset}/{category}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        dataset=get_dataset_params,
    script:
        "../workflow/scripts/build_manifest.py"
