# Download (where the dataset has an official URL), then one manifest per category.


rule download:
    output:
        PATHS.download,
    log:
        PATHS.log("download", "dataset"),
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
        PATHS.manifest,
    log:
        PATHS.log("manifest", "dataset", "category"),
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        dataset=get_dataset_params,
    script:
        "../workflow/scripts/build_manifest.py"
