# The autoencoder of latent-diffusion methods, finetuned on the normal train images of
# a method's training unit (paper 003, LDM's recipe): one model folder per
# (autoencoder, dataset, unit), unit `all` for one model per dataset, shared by every
# variant and category that names it. `finetune: false` saves the pretrained VAE as it is.


rule autoencoder:
    input:
        unpack(get_autoencoder_inputs),
    output:
        metadata=PATHS.autoencoder,
        loss=PATHS.autoencoder_loss,
    log:
        PATHS.log("autoencoder", "autoencoder", "dataset", "category"),
    conda:
        "../envs/torch.yaml"
    threads: PLAN.threads("autoencoder")
    resources:
        **PLAN.resources("autoencoder"),
    params:
        # What reruns the job; it reads its run settings (checkpoints) from the plan.
        autoencoder=get_autoencoder,
        seed=PLAN.runtime_settings()["seed"],
    script:
        "../workflow/scripts/autoencoder.py"
