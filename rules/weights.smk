# Pretrained weights into the local cache, one folder per source. A local rule:
# login nodes have internet, compute nodes often do not, and every later job
# loads offline. source.json is written last and marks the folder complete.


rule fetch_weights:
    output:
        PATHS.weights_marker,
    log:
        PATHS.log("weights", "name"),
    localrule: True
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/fetch_weights.py"
