"""Rule `download`: a dataset's archive from its official URL, checked and extracted; in a
rehearsal, a few images written in the dataset's published layout instead."""

from diffad.data import download_dataset
from diffad.data.layouts import write_layout
from diffad.io import write_json
from diffad.logs import job_header, log_to
from diffad.plan import Plan

sm = snakemake  # noqa: F821 (injected by Snakemake)
with log_to(sm.log[0], job_header(sm.rule, dict(sm.wildcards))) as log:
    name = sm.wildcards.dataset
    entry = Plan.from_config(sm.config).datasets[name]
    layout = entry.get("rehearsal_layout")
    if layout:
        write_layout(entry["kind"], entry["root"], entry["categories"],
                     layout["train_images"], layout["test_images"])
        log.info("wrote %s in %s's published layout: %s", entry["root"], entry["kind"],
                 ", ".join(entry["categories"]))
    else:
        download_dataset(name, sm.params.dataset)
    write_json({"dataset": name, "root": entry["root"]}, sm.output[0])
