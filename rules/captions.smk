# Captions of a category's images by a vision-language model (paper 003): one table per
# (captioner, dataset, category) of the train images, and of the test images where a
# variant conditions its inference on them. Resumable: a killed job keeps what it wrote.


rule captions:
    input:
        manifest="results/data/{dataset}/{category}.parquet",
        weights=get_captioner_weights,
    output:
        "results/captions/{captioner}/{dataset}/{category}.parquet",
    log:
        "logs/captions/{captioner}/{dataset}/{category}.log",
    conda:
        "../envs/torch.yaml"
    threads: get_resource("captions", "cpus_per_task")
    resources:
        mem_mb=get_resource("captions", "mem_mb"),
        runtime=get_resource("captions", "runtime"),
        cpus_per_task=get_resource("captions", "cpus_per_task"),
        gpu=get_resource("captions", "gpu"),
        gpu_model=get_resource("captions", "gpu_model"),
    params:
        captioner=get_captioner,
        split="train",
        seed=RUNTIME["seed"],
    script:
        "../workflow/scripts/captions.py"


use rule captions as test_captions with:
    output:
        "results/captions/{captioner}/{dataset}/test/{category}.parquet",
    log:
        "logs/captions/{captioner}/{dataset}/test/{category}.log",
    params:
        captioner=get_captioner,
        split="test",
        seed=RUNTIME["seed"],
