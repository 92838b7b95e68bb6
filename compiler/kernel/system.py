"""The host's service manager and nftfwd's table in it, for install and uninstall."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from nftfwd.errors import NftfwdError
from nftfwd.kernel.libnft import Nft


def systemctl(*args: str) -> None:
    tool = shutil.which("systemctl")
    if tool is None:
        raise NftfwdError("systemctl is not available: is this a systemd host?")
    proc = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NftfwdError(f"`systemctl {' '.join(args)}` failed: {proc.stderr.strip()}")


def systemd_running() -> bool:
    """Whether systemd runs this system (sd_booted(3)): not so in a chroot or an image build."""
    return Path("/run/systemd/system").is_dir()


def delete_table(family: str, table: str) -> None:
    """Remove one table whether or not it exists, as one transaction."""
    Nft().apply_text(
        f"table {family} {table}\ndelete table {family} {table}\n",
        f"removing table {family} {table}",
    )
