"""The one-time install of the SLURM profile under the user's config folder."""

from __future__ import annotations

import pytest


def test_slurm_profile_installs_by_name_with_account_and_partition(tmp_path):
    from diffad.profiles import SOURCE, filled_profile, install_profile

    target = install_profile("lab42", "gpu", config_home=tmp_path)
    assert target == tmp_path / "snakemake" / "slurm" / "config.yaml"
    text = target.read_text()
    assert 'slurm_account: "lab42"' in text and 'slurm_partition: "gpu"' in text
    assert "# slurm_account" not in text and "executor: slurm" in text
    # Everything else is the checkout's profile, line for line.
    assert len(text.splitlines()) == len(SOURCE.read_text().splitlines())
    with pytest.raises(ValueError, match="slurm_account"):
        filled_profile("jobs: 1\n", "lab42", None)
