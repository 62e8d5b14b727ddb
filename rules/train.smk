# One model folder per (method, dataset, category), or per dataset (category `all`).


rule train:
    input:
        unpack(get_upstream),
    output:
        metadata="results/models/{method}/{dataset}/{category}/metadata.json",
        loss="results/models/{method}/{dataset}/{category}/loss.parquet",
    log:
        "logs/train/{method}/{dataset}/{category}.log",
    conda:
        "../envs/torch.yaml"
    threads: get_resource("train", "cpus_per_task")
    resources:
        mem_mb=get_resource("train", "mem_mb"),
        runtime=get_resource("train", "runtime"),
        cpus_per_task=get_resource("train", "cpus_per_task"),
        gpu=get_resource("train", "gpu"),
        gpu_model=get_resource("train", "gpu_model"),
    params:
        method=get_training_params,
        artefacts=get_artefacts,
        image_size=get_image_size,
        seed=RUNTIME["seed"],
    script:
        "../workflow/scripts/train.py"
