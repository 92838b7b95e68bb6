"""seed004's host (host port 2222 -> centos port 22) with foreign rules beside nftfwd's:
shared by doctor's kernel tests (tests/e2e/test_doctor_kernel.py) and README's doctor
transcripts (tests/packaging/test_readme.py)."""

from __future__ import annotations

from conftest import SCENARIOS, TEST_DATA
from harness import Topology
from wire import load, read_model

MODEL = SCENARIOS / "seed004-ssh-2222.yaml"
HOST = "localhost"
GUEST, BRIDGE = "centos", "virbr0"
OUTSIDE_PORT = 7100  # a server in client0 that the guest reaches through masquerade
NO_FLUSH = "table inet filter {\n}\n"  # an nftables.conf that keeps other tables

# --- the foreign setups -----------------------------------------------------------------

SETUPS = TEST_DATA / "doctor" / "setups"


def load_setup(topo: Topology, name: str) -> None:
    """Load setups/NAME into the host namespace as make_fixtures.sh does: a .rules file
    with iptables-nft-restore, a .nft file with nft -f."""
    text = (SETUPS / name).read_text()
    if name.endswith(".rules"):
        topo.run("host", ["iptables-nft-restore"], input=text)
    else:
        topo.load_ruleset(text)


def seed004() -> Topology:
    return Topology(read_model(MODEL), HOST)


def start(topo: Topology) -> None:
    """nftfwd's rules loaded, servers in the guest and in client0, hairpin mode on the
    guest's bridge port (with br_netfilter, hairpin traffic is bridged back out of it)."""
    load(topo, MODEL, HOST)
    topo.serve(GUEST, [22], ("tcp",))
    topo.serve_in("client0", "client0", [OUTSIDE_PORT], ("tcp",))
    topo.run("host", ["bridge", "link", "set", "dev", "vg0", "hairpin", "on"])
