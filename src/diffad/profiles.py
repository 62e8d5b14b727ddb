"""Installing the project's SLURM profile by name, so `snakemake --profile slurm` works.

Snakemake finds a profile given by name in the working directory, then in
the user's config folder (``$XDG_CONFIG_HOME/snakemake/<name>``, by default
``~/.config/snakemake/<name>``). Cluster users keep their profile there, with
their account and partition, and type ``snakemake --profile slurm``. This
copies ``profiles/slurm/config.yaml`` there once, with the two filled in::

    python -m diffad.profiles --account my_account --partition gpu
    make slurm-profile ACCOUNT=my_account PARTITION=gpu

``--profile profiles/slurm`` keeps working from the checkout.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from diffad.io import atomic_path

#: The checkout's SLURM profile (an editable install imports diffad from src/).
SOURCE = Path(__file__).resolve().parents[2] / "profiles" / "slurm" / "config.yaml"


def user_profile_dir(name: str = "slurm", config_home: str | os.PathLike | None = None) -> Path:
    """Where Snakemake looks for profile ``name`` in the user's config folder."""
    home = config_home or os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(home) / "snakemake" / name


def filled_profile(text: str, account: str | None, partition: str | None) -> str:
    """The profile ``text`` with its commented account and partition lines set."""
    for key, value in (("slurm_account", account), ("slurm_partition", partition)):
        if value is None:
            continue
        line = re.compile(rf"^(\s*)#?\s*{key}:.*$", flags=re.M)
        if not line.search(text):
            raise ValueError(f"the profile has no `{key}:` line to fill in")
        text = line.sub(lambda m, k=key, v=value: f'{m.group(1)}{k}: "{v}"', text, count=1)
    return text


def install_profile(account: str | None, partition: str | None, name: str = "slurm",
                    config_home: str | os.PathLike | None = None,
                    source: str | os.PathLike = SOURCE) -> Path:
    """Write the filled profile to the user's config folder; return its file."""
    target = user_profile_dir(name, config_home) / "config.yaml"
    with atomic_path(target) as tmp:
        tmp.write_text(filled_profile(Path(source).read_text(), account, partition))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--account", help="SLURM account (sacctmgr show assoc user=$USER)")
    parser.add_argument("--partition", help="SLURM partition with GPUs (sinfo -s)")
    parser.add_argument("--name", default="slurm", help="profile name (default: slurm)")
    args = parser.parse_args()
    target = install_profile(args.account, args.partition, args.name)
    print(f"installed {target}: run `snakemake --profile {args.name} --configfile "
          "config/experiments/<paper>.yaml` from the checkout")


if __name__ == "__main__":
    main()
