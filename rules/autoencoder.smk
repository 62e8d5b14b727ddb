# The autoencoder of latent-diffusion methods, finetuned on the normal train images of
# a method's training unit (paper 003, LDM's recipe): one model folder per
# (autoencoder, dataset, unit), unit `all` for one model per dataset, shared by every
# variant and category that names it. `finetune: false` saves the pretrained VAE as it is.


rule autoencoder:
    input:
        unpack(get_autoencoder_inputs),
    output:
        metadata="results/models/autoencoder/{autoencoder}/{dataset}/{category}/metadata.json",
        loss="results/models/autoencoder/{autoencoder}/{dataset}/{category}/loss.parquet",
    log:
        "logs/autoencoder/{autoencoder}/{dataset}/{category}.log",
    conda:
        "../envs/torch.yaml"
    threads: get_resource("autoencoder", "cpus_per_task")
    resources:
        mem_mb=get_resource("autoencoder", "mem_mb"),
        runtime=get_resource("autoencoder", "runtime"),
        cpus_per_task=get_resource("autoencoder", "cpus_per_task"),
        gpu=get_resource("autoencoder", "gpu"),
        gpu_model=get_resource("autoencoder", "gpu_model"),
    params:
        autoencoder=get_autoencoder,
        seed=RUNTIME["seed"],
    script:
        "../workflow/scripts/autoencoder.py"
