"""`nftfwd libvirt import`: libvirt network XML -> model skeleton; the hook's dispatch."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEST_DATA

from nftfwd.errors import NftfwdError
from nftfwd.libvirt import hook_action, import_networks, open_mode_steps
from nftfwd.schema import validate_shape
from nftfwd.semantic import build_model
from nftfwd.source import load_text

DATA = TEST_DATA / "libvirt"

HEADER = """\
# Written by `nftfwd libvirt import`. Edit the lines marked EDIT, add forwards to
# the guests, then run `nftfwd check` and `nftfwd load --atomic`.
version: 1
hosts:
  kvm1:  # this machine's hostname, by which nftfwd picks the host
    uplinks: [eth0]  # EDIT: the interface where outside traffic arrives
"""

# The printed edit of a NAT network's XML (test_the_printed_open_mode_edit_works_...).
NAT_TO_OPEN = (
    "sed -z -i -E \"s#<forward( [^>]*)?/>|<forward( [^>]*)?>.*</forward>#<forward mode='open'/>#\""
)

DEFAULT = (
    "# nftfwd model skeleton from libvirt network XML: default.xml\n"
    + HEADER
    + """\
    bridges:
      # libvirt network 'default' (default.xml), forward mode nat.
      # WARNING: in NAT mode libvirt's own firewall rules reject new connections DNATed
      # to its guests, so no forward to this network can work. Switch it to open mode,
      # where libvirt adds no rules and nftfwd does the NAT:
      #   virsh net-dumpxml --inactive default > /tmp/default.xml
"""
    + f"      #   {NAT_TO_OPEN} /tmp/default.xml\n"
    + """\
      #   virsh net-define /tmp/default.xml
      #   virsh net-destroy default && virsh net-start default
      #   or interactively: virsh net-edit default, replace <forward mode='nat'/> (or
      #   the block <forward mode='nat'> ... </forward>) with <forward mode='open'/>;
      #   then restart it as above
      #     (guests running on it may need a restart to get their link back)
      virbr0:
        subnet: "192.168.122.0/24"
        # No static DHCP hosts in this network. EDIT: add guests with fixed addresses:
        # guests:
        #   vm1:
        #     address: "192.168.122.10"
        #     forwards:
        #       - {port: PORT1, to: 80}
"""
)

LAB_BRIDGE = """\
      # libvirt network 'lab' (lab.xml), forward mode open.
      virbr1:
        subnet: "10.10.20.0/24"
        subnet6: "fd00:10:20::/64"
        guests:
          web:
            address: "10.10.20.10"
            address6: "fd00:10:20::10"
            # forwards:  # EDIT: uncomment and list the forwards, e.g.
            #   - {port: PORT1, to: 80}
          db:
            address: "10.10.20.11"
            address6: "fd00:10:20::11"
            # forwards:  # EDIT: uncomment and list the forwards, e.g.
            #   - {port: PORT2, to: 80}
          mail.lab:
            address: "10.10.20.12"
            # forwards:  # EDIT: uncomment and list the forwards, e.g.
            #   - {port: PORT3, to: 80}
          mac-52-54-00-6b-12-04:  # libvirt DHCP host without a name (mac 52:54:00:6b:12:04)
            address: "10.10.20.13"
            # forwards:  # EDIT: uncomment and list the forwards, e.g.
            #   - {port: PORT4, to: 80}
          monitor:
            address6: "fd00:10:20::15"
            # forwards:  # EDIT: uncomment and list the forwards, e.g.
            #   - {port: PORT5, to: 80}
"""

ISOLATED_BRIDGE = """\
      # libvirt network 'isolated' (isolated.xml), forward mode none (isolated).
      # WARNING: isolated (no <forward>): libvirt's own firewall rules reject all
      # traffic between this bridge and other interfaces, so no forward can work. To
      # forward to these guests, switch it to open mode (the guests then also reach the
      # outside through nftfwd's masquerade):
      #   virsh net-dumpxml --inactive isolated > /tmp/isolated.xml
      #   sed -i "s#</name>#&<forward mode='open'/>#" /tmp/isolated.xml
      #   virsh net-define /tmp/isolated.xml
      #   virsh net-destroy isolated && virsh net-start isolated
      #   or interactively: virsh net-edit isolated, add the element <forward
      #   mode='open'/>; then restart it as above
      #     (guests running on it may need a restart to get their link back)
      virbr2:
        subnet: "192.168.100.0/24"
        guests:
          backup:
            address: "192.168.100.10"
            # forwards:  # EDIT: uncomment and list the forwards, e.g.
            #   - {port: PORT1, to: 80}
"""


def ports(text: str, first: int) -> str:
    """`text` with its example ports PORT1, PORT2, ... numbered from 8000 + `first`."""
    return re.sub(r"PORT(\d+)", lambda m: str(8000 + first - 1 + int(m[1])), text)


def sources(*names: str) -> list[tuple[str, str]]:
    return [(name, (DATA / name).read_text(encoding="utf-8")) for name in names]


def skeleton(xml: str, name: str = "net.xml", **kwargs: Any) -> str:
    return import_networks([(name, xml)], host_name=kwargs.pop("host_name", "kvm1"), **kwargs)


# The commented example lines of a skeleton, which a user uncomments.
EXAMPLE_LINE = re.compile(
    r"^( *)# ((?:guests:|  vm1:|    address6?: |    forwards:|forwards:|  +- \{port).*)$", re.M
)


def comments(text: str) -> str:
    """All comment text of `text`, with its line wrapping undone."""
    return " ".join(
        " ".join(line.split("# ", 1)[1] for line in text.splitlines() if "# " in line).split()
    )


def assert_valid_model(text: str) -> dict[str, Any]:
    """The skeleton parses, and is a valid model both as written and with its examples."""
    data: dict[str, Any] = yaml.safe_load(text)
    build_model(_shape_checked(text))
    uncommented = EXAMPLE_LINE.sub(r"\1\2", text)
    assert uncommented != text
    model = build_model(_shape_checked(uncommented))
    guests = [g for h in model.hosts for b in h.bridges for g in b.guests]
    assert all(g.forwards for g in guests)
    return data


def _shape_checked(text: str) -> Any:
    doc = load_text(text, "skeleton.yaml")
    validate_shape(doc)
    return doc


def addresses(data: Any) -> list[Any]:
    found = []
    for host in data["hosts"].values():
        for bridge in (host.get("bridges") or {}).values():
            found += [bridge.get("subnet"), bridge.get("subnet6")]
            for guest in (bridge.get("guests") or {}).values():
                found += [guest.get("address"), guest.get("address6")]
    return [a for a in found if a is not None]


def test_stock_default_network() -> None:
    text = import_networks(sources("default.xml"), host_name="kvm1")
    assert text == ports(DEFAULT, 1)
    data = assert_valid_model(text)
    assert data["hosts"]["kvm1"]["bridges"] == {"virbr0": {"subnet": "192.168.122.0/24"}}


def test_open_network_with_static_ipv4_and_ipv6_hosts() -> None:
    text = import_networks(sources("lab.xml"), host_name="kvm1")
    assert text == (
        "# nftfwd model skeleton from libvirt network XML: lab.xml\n"
        + HEADER
        + "    bridges:\n"
        + ports(LAB_BRIDGE, 1)
    )
    data = assert_valid_model(text)
    guests = data["hosts"]["kvm1"]["bridges"]["virbr1"]["guests"]
    assert guests["web"] == {"address": "10.10.20.10", "address6": "fd00:10:20::10"}
    assert guests["monitor"] == {"address6": "fd00:10:20::15"}


def test_isolated_network_is_imported_with_a_warning() -> None:
    text = import_networks(sources("isolated.xml"), host_name="kvm1")
    assert text == (
        "# nftfwd model skeleton from libvirt network XML: isolated.xml\n"
        + HEADER
        + "    bridges:\n"
        + ports(ISOLATED_BRIDGE, 1)
    )
    assert_valid_model(text)


def test_several_networks_in_order_and_deterministic() -> None:
    names = ("default.xml", "lab.xml", "isolated.xml")
    text = import_networks(sources(*names), host_name="kvm1")
    assert text == import_networks(sources(*names), host_name="kvm1")
    default_bridge = ports(DEFAULT.split("    bridges:\n", 1)[1], 1)
    assert text == (
        "# nftfwd model skeleton from libvirt network XML: default.xml, lab.xml, isolated.xml\n"
        + HEADER
        + "    bridges:\n"
        + default_bridge
        + ports(LAB_BRIDGE, 2)
        + ports(ISOLATED_BRIDGE, 7)
    )
    data = assert_valid_model(text)
    assert list(data["hosts"]["kvm1"]["bridges"]) == ["virbr0", "virbr1", "virbr2"]
    assert all(isinstance(a, str) for a in addresses(data))
    assert len(addresses(data)) == 12


def test_uplink_and_host_name_are_parameters() -> None:
    text = import_networks(sources("lab.xml"), host_name="hv 2.example.org", uplink="enp2s0")
    assert "  hv-2.example.org:  # this machine's hostname" in text
    assert "    uplinks: [enp2s0]  # EDIT:" in text
    assert list(yaml.safe_load(text)["hosts"]) == ["hv-2.example.org"]
    with pytest.raises(NftfwdError, match="not an interface name"):
        import_networks(sources("lab.xml"), host_name="kvm1", uplink="eth 0")


def network(body: str, name: str = "net", forward: str = "<forward mode='open'/>") -> str:
    return f"<network><name>{name}</name>{forward}<bridge name='br9'/>{body}</network>"


def ip4(hosts: str, attrs: str = "address='10.9.0.1' prefix='24'") -> str:
    return f"<ip {attrs}><dhcp>{hosts}</dhcp></ip>"


def guests_of(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    result: dict[str, Any] = data["hosts"]["kvm1"]["bridges"]["br9"].get("guests", {})
    return result


def test_guest_names_are_sanitised_unique_and_yaml_safe() -> None:
    hosts = (
        "<host mac='52:54:00:00:00:01' name='Mail Server' ip='10.9.0.11'/>"
        "<host mac='52:54:00:00:00:02' name='Mail/Server' ip='10.9.0.12'/>"
        "<host mac='52:54:00:00:00:03' name='123' ip='10.9.0.13'/>"
        "<host mac='52:54:00:00:00:04' name='null' ip='10.9.0.14'/>"
        "<host mac='52:54:00:00:00:05' name='caf\u00e9' ip='10.9.0.15'/>"
        "<host mac='52:54:00:00:00:06' name='\u00e9\u00e9' ip='10.9.0.16'/>"
    )
    text = skeleton(network(ip4(hosts)))
    assert "          Mail-Server:  # libvirt name 'Mail Server'\n" in text
    assert "          Mail-Server-2:  # libvirt name 'Mail/Server'\n" in text
    assert '          "123":\n' in text
    assert '          "null":\n' in text
    assert "          caf:  # libvirt name 'caf\u00e9'\n" in text
    assert list(guests_of(text)) == ["Mail-Server", "Mail-Server-2", "123", "null", "caf", "guest"]
    assert_valid_model(text)


def test_unnamed_hosts_are_named_from_their_mac_or_duid() -> None:
    body = ip4("<host mac='52:54:00:AA:BB:CC' ip='10.9.0.20'/>") + (
        "<ip family='ipv6' address='fd09::1' prefix='64'><dhcp>"
        "<host id='0:1:0:1:2c:3d:4e:5f:52:54:0:aa:bb:cc' ip='fd09::20'/>"
        "</dhcp></ip>"
    )
    text = skeleton(network(body))
    assert "mac-52-54-00-aa-bb-cc:  # libvirt DHCP host without a name (mac 52:54:00:aa:bb:cc)" in (
        text
    )
    assert guests_of(text) == {
        "mac-52-54-00-aa-bb-cc": {"address": "10.9.0.20"},
        "duid-0-1-0-1-2c-3d-4e-5f-52-54-0-aa-bb-cc": {"address6": "fd09::20"},
    }
    assert_valid_model(text)


def test_ipv6_hosts_merge_by_name_and_duplicates_stay_apart() -> None:
    body = ip4(
        "<host mac='52:54:00:00:00:01' name='a' ip='10.9.0.11'/>"
        "<host mac='52:54:00:00:00:02' name='a' ip='10.9.0.12'/>"
    ) + (
        "<ip family='ipv6' address='fd09::1' prefix='64'><dhcp>"
        "<host name='a' ip='fd09::11'/><host name='b' ip='fd09::12'/>"
        "</dhcp></ip>"
    )
    assert guests_of(skeleton(network(body))) == {
        "a": {"address": "10.9.0.11", "address6": "fd09::11"},
        "a-2": {"address": "10.9.0.12"},
        "b": {"address6": "fd09::12"},
    }


@pytest.mark.parametrize(
    ("attrs", "subnet"),
    [
        ("address='10.9.0.1' netmask='255.255.0.0'", "10.9.0.0/16"),
        ("address='10.9.0.1' prefix='20'", "10.9.0.0/20"),
        ("address='10.9.0.1'", "10.0.0.0/8"),  # libvirt's classful default
        ("address='172.16.5.1'", "172.16.0.0/16"),
        ("address='192.168.7.1'", "192.168.7.0/24"),
        ("family='ipv4' address='10.9.0.1' prefix='24'", "10.9.0.0/24"),
    ],
)
def test_subnet_from_netmask_prefix_or_class(attrs: str, subnet: str) -> None:
    data = yaml.safe_load(skeleton(network(f"<ip {attrs}/>")))
    assert data["hosts"]["kvm1"]["bridges"]["br9"]["subnet"] == subnet


def test_ipv6_only_network_and_default_prefix() -> None:
    text = skeleton(network("<ip family='ipv6' address='fd09:0:0:1::1'/>"))
    assert '        subnet6: "fd09:0:0:1::/64"\n' in text
    assert '        #     address6: "fd09:0:0:1::a"\n' in text
    assert_valid_model(text)


def test_second_ip_of_a_family_and_bad_hosts_are_left_out_with_a_comment() -> None:
    body = (
        "<ip address='10.8.0.1' prefix='24'/>"
        + ip4(
            "<host mac='52:54:00:00:00:01' name='in' ip='10.9.0.11'/>"
            "<host mac='52:54:00:00:00:02' name='out' ip='10.7.0.11'/>"
            "<host mac='52:54:00:00:00:03' name='bcast' ip='10.9.0.255'/>"
            "<host mac='52:54:00:00:00:04' name='junk' ip='ten'/>"
            "<host ip='10.9.0.12'/>"
        )
        + "<ip family='ipv6' address='nonsense' prefix='64'/>"
    )
    text = skeleton(network(body))
    assert guests_of(text) == {"in": {"address": "10.9.0.11"}}
    for comment in (
        "ignored <ip address='10.8.0.1'>: a bridge has one IPv4 subnet in the model.",
        "ignored DHCP host 'out': its ip '10.7.0.11' is not a guest address in 10.9.0.0/24.",
        "ignored DHCP host 'bcast': its ip '10.9.0.255' is not a guest address in 10.9.0.0/24.",
        "ignored DHCP host 'junk': its ip 'ten' is not a guest address in 10.9.0.0/24.",
        "ignored a DHCP <host> with neither name, mac nor id.",
        "ignored <ip address='nonsense'>: not a valid address and netmask or prefix.",
    ):
        assert comment in comments(text)
    assert_valid_model(text)


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        ("<network><name>n</name><ip address='10.9.0.1' prefix='24'/></network>", "no <bridge"),
        (network(""), "no usable <ip> element"),
        (network("", forward="<forward mode='bridge'/>"), "nothing for nftfwd to forward"),
        (
            "<network><name>n</name><bridge name='a-name-too-long-for-linux'/>"
            "<ip address='10.9.0.1' prefix='24'/></network>",
            "is not an interface name",
        ),
    ],
)
def test_networks_nftfwd_cannot_use_are_skipped_with_the_reason(xml: str, reason: str) -> None:
    text = skeleton(xml)
    assert reason in text
    assert "    bridges: {}  # EDIT: no libvirt network could be imported\n" in text
    assert yaml.safe_load(text)["hosts"]["kvm1"]["bridges"] == {}
    validate_shape(load_text(text, "skeleton.yaml"))


def test_a_bridge_imported_twice_is_skipped() -> None:
    xml = network(ip4(""))
    text = import_networks([("a.xml", xml), ("b.xml", xml)], host_name="kvm1")
    assert "# libvirt network 'net' (b.xml) skipped: its bridge br9 is already imported" in text
    assert text.count("      br9:\n") == 1


def test_forward_without_mode_is_nat_and_route_mode_gets_a_hint() -> None:
    nat = skeleton(network(ip4(""), name="n1", forward="<forward/>"))
    assert "forward mode nat." in nat
    assert "virsh net-define /tmp/n1.xml\n" in nat
    route = skeleton(network(ip4(""), forward="<forward mode='route' dev='eth1'/>"))
    assert "you may want `masquerade: false`" in route
    assert "WARNING" not in route


def test_text_from_the_xml_cannot_escape_its_comment() -> None:
    xml = network(ip4(""), name="evil&#10;table: x&#x2028;y", forward="<forward/>")
    text = import_networks([("we\nird.xml", xml)], host_name="kvm1")
    data = yaml.safe_load(text)
    assert set(data) == {"version", "hosts"}
    assert "virsh net-destroy 'evil?table: x?y' && virsh net-start 'evil?table: x?y'\n" in text
    assert "from libvirt network XML: we?ird.xml\n" in text


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<network><name>x</name>", r"^broken\.xml: this is not valid XML \(.*\); give the output"),
        ("<domain/>", r"^broken\.xml: this is not a libvirt network's XML \(its root element"),
        (
            '<!DOCTYPE network [<!ENTITY a "aaaa">]><network><name>&a;</name></network>',
            r"^broken\.xml: refusing XML with a DTD",
        ),
        ("", r"^broken\.xml: this is not valid XML"),
    ],
)
def test_bad_xml_is_one_error_naming_the_file(xml: str, message: str) -> None:
    with pytest.raises(NftfwdError, match=message) as caught:
        import_networks([("ok.xml", network(ip4(""))), ("broken.xml", xml)], host_name="kvm1")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "action"),
    [
        (["default", "started", "begin", "-"], "reload"),
        (["default", "updated", "begin", "-"], "reload"),
        (["default", "start", "begin", "-"], None),
        (["default", "stopped", "end", "-"], None),
        (["default", "port-created", "begin", "-"], None),
        (["default", "port-deleted", "begin", "-"], None),
        (["default", "some-future-operation", "begin", "-"], None),
        (["default"], None),
        ([], None),
    ],
)
def test_hook_action(argv: list[str], action: str | None) -> None:
    assert hook_action(argv) == action


# The <forward> shapes libvirt shows: `net-edit`/`net-dumpxml --inactive` of a network
# defined from Debian's default, a running network's `net-dumpxml`, Debian's own file,
# and a NAT block with an address range and a <dns> whose <forwarder>s must stay.
FORWARD_SHAPES = {
    "net-edit": "<forward mode='nat'/>",
    "net-dumpxml": "<forward mode='nat'>\n    <nat>\n      <port start='1024' end='65535'/>\n"
    "    </nat>\n  </forward>",
    "debian-default": "<forward/>",
    "nat-block-and-dns": "<forward dev='eth0' mode='nat'>\n    <nat><address start='203.0.113.5'"
    " end='203.0.113.9'/></nat>\n    <interface dev='eth0'/>\n  </forward>\n  <dns>\n"
    "    <forwarder addr='192.0.2.53'/>\n    <forwarder domain='lan' addr='192.0.2.54'>"
    "</forwarder>\n  </dns>",
}


@pytest.mark.parametrize("shape", sorted(FORWARD_SHAPES))
def test_the_printed_open_mode_edit_works_on_every_shape(shape: str, tmp_path: Path) -> None:
    """The sed line of the fix, run as printed, leaves one <forward mode='open'/> and
    every other element as it was (the define and restart need a libvirtd: tests/real)."""
    xml = (
        "<network>\n  <name>n1</name>\n  <uuid>30d80906-7512-467f-a644-027991adfe06</uuid>\n"
        f"  {FORWARD_SHAPES[shape]}\n  <bridge name='virbr0' stp='on' delay='0'/>\n"
        "  <ip address='192.168.122.1' netmask='255.255.255.0'/>\n</network>\n"
    )
    path = tmp_path / "n1.xml"
    path.write_text(xml)
    edit = open_mode_steps("n1")[1].replace("/tmp/n1.xml", str(path))
    subprocess.run(["bash", "-c", edit], check=True)
    before, after = ET.fromstring(xml), ET.parse(path).getroot()
    (forward,) = after.findall("forward")
    assert (forward.attrib, list(forward)) == ({"mode": "open"}, [])
    rest = [ET.tostring(e) for e in after if e.tag != "forward"]
    assert rest == [ET.tostring(e) for e in before if e.tag != "forward"]


def test_the_printed_edit_gives_an_isolated_network_a_forward(tmp_path: Path) -> None:
    path = tmp_path / "iso.xml"
    path.write_text("<network>\n  <name>iso</name>\n  <bridge name='virbr2'/>\n</network>\n")
    edit = open_mode_steps("iso", isolated=True)[1].replace("/tmp/iso.xml", str(path))
    subprocess.run(["bash", "-c", edit], check=True)
    root = ET.parse(path).getroot()
    assert [(e.tag, e.attrib) for e in root] == [
        ("name", {}),
        ("forward", {"mode": "open"}),
        ("bridge", {"name": "virbr2"}),
    ]
