# Pretrained weights into the local cache. A local rule: login nodes have
# internet, compute nodes often do not, and every later job loads offline.


rule fetch_weights:
    output:
        weights=f"{WEIGHTS}/{{backbone}}/model.safetensors",
        config=f"{WEIGHTS}/{{backbone}}/config.json",
    log:
        "logs/weights/{backbone}.log",
    localrule: True
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/fetch_weights.py"
