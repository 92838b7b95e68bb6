"""libvirt integration: a model skeleton from network XML, and the network hook's dispatch.

`import_networks` reads the XML that `virsh net-dumpxml NAME` prints (or the files in
/etc/libvirt/qemu/networks/) and writes a commented YAML model to add forwards to: one
bridge per network, one guest per static DHCP host.

`hook_action` decides what nftfwd does when libvirt runs its network hook,
`/etc/libvirt/hooks/network NETWORK OPERATION SUB-OPERATION EXTRA`, with the network
XML on stdin. libvirt waits for the hook to exit while holding the network busy, and
a failing hook aborts the operation (for `start` and `started`, the network's start):
so the hook must never call back into libvirt (no virsh, no libvirt API: that
deadlocks), must finish quickly, and must exit 0 even when the reload fails (logging
why instead). libvirt only notices a hook that existed when its daemon started.
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

import yaml

from nftfwd.errors import NftfwdError

# Operations after which libvirt has (re)created the bridge and its own firewall rules,
# so nftfwd reloads its table and re-checks the host. `start` runs before the bridge
# exists; `stopped` leaves nftfwd's rules harmless (they match interface names);
# `port-created`/`port-deleted` (a guest plugged in or out) change nothing nftfwd uses.
HOOK_RELOAD_OPERATIONS = frozenset({"started", "updated"})

_NAME_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_NAME_MAX = 253
# Forward modes whose guests sit directly on a physical network: nothing to forward.
_DIRECT_MODES = frozenset({"bridge", "private", "vepa", "passthrough", "hostdev"})

Subnet = IPv4Network | IPv6Network


def hook_action(argv: list[str]) -> str | None:
    """What nftfwd does for one libvirt network hook call: "reload", or None for nothing.

    `argv` is what libvirt passed after the script name: NETWORK OPERATION SUB-OP EXTRA.
    Anything unexpected (too few arguments, an operation a later libvirt adds) is None,
    so the hook never fails a libvirt operation.
    """
    if len(argv) >= 2 and argv[1] in HOOK_RELOAD_OPERATIONS:
        return "reload"
    return None


@dataclass
class _Guest:
    key: str  # libvirt's name, else "mac-"/"duid-" + value: what IPv4 and IPv6 entries merge on
    unnamed: str  # for a host without a name: "mac VALUE" or "id VALUE"
    label: str = ""  # the guest's model name, valid and unique in its bridge
    address: IPv4Address | None = None
    address6: IPv6Address | None = None
    comment: str = ""


@dataclass
class _Network:
    name: str
    source: str
    bridge: str
    mode: str | None  # None: no <forward> (isolated)
    subnet: IPv4Network | None = None
    subnet6: IPv6Network | None = None
    guests: list[_Guest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # comment lines about skipped parts


# What the skeleton's template writes, every value already quoted for YAML (keys and flow
# items plain only where YAML reads them back as the same string, addresses and subnets
# go in double quotes) and every comment line printable: nothing from the XML can leave
# its scalar or its comment.
SKELETON_TEMPLATE = "libvirt-import.yaml.j2"


@dataclass(frozen=True)
class _GuestLines:
    key: str
    comment: str
    address: str | None
    address6: str | None
    example_port: int


@dataclass(frozen=True)
class _BridgeLines:
    key: str
    subnet: str | None
    subnet6: str | None
    notes: list[str]  # comment lines, each after `# `
    guests: list[_GuestLines]
    # With no guests: an example guest, commented out.
    example_field: str
    example_address: str
    example_port: int


@dataclass(frozen=True)
class _Section:
    """One libvirt network in the skeleton: comment lines, then its bridge unless skipped."""

    comment: list[str]  # each after `# `
    bridge: _BridgeLines | None = None


def import_networks(
    xml_texts: list[tuple[str, str]], *, host_name: str, uplink: str = "eth0"
) -> str:
    """A commented YAML model skeleton for the libvirt networks in `xml_texts`.

    `xml_texts` holds (source name, XML text) pairs, the source name being what the user
    knows the XML by (a file name) and used in comments and errors. `host_name` names the
    one host (pass `socket.gethostname()`); `uplink` is written as a placeholder the user
    must check. Raises NftfwdError for text that is not a libvirt network's XML.
    """
    if not _IFNAME.fullmatch(uplink) or uplink in (".", ".."):
        raise NftfwdError(f"{uplink!r} is not an interface name nftfwd accepts as an uplink.")
    from nftfwd.templating import render  # jinja2: not on the hook's path, which imports this

    sources = ", ".join(_printable(source) for source, _ in xml_texts) or "(none)"
    sections: list[_Section] = []
    bridges_seen: dict[str, str] = {}
    examples = 1  # example host ports are 8001, 8002, ...: uncommented, they never clash
    for source, text in xml_texts:
        network = _parse_network(source, text)
        if isinstance(network, str):
            sections.append(_Section(_wrap(network, 6)))
        elif network.bridge in bridges_seen:
            why = (
                f"libvirt network {network.name!r} ({network.source}) skipped: its bridge "
                f"{network.bridge} is already imported from {bridges_seen[network.bridge]}."
            )
            sections.append(_Section(_wrap(why, 6)))
        else:
            bridges_seen[network.bridge] = network.source
            sections.append(_network_section(network, examples))
            examples += max(1, len(network.guests))
    return render(
        SKELETON_TEMPLATE,
        header=_wrap(f"nftfwd model skeleton from libvirt network XML: {sources}", 0),
        host=_key(_sanitise(host_name) or "host"),
        uplink=_flow_item(uplink),
        sections=sections,
        imported=bool(bridges_seen),
    )


# --- parsing ---------------------------------------------------------------------------


def _parse_xml(source: str, text: str) -> ET.Element:
    # libvirt never writes a DTD; refusing one means no entity is ever declared, let
    # alone expanded (ElementTree would expand internal entities).
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise NftfwdError(
            f"{_printable(source)}: refusing XML with a DTD, which libvirt never writes."
        )
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise NftfwdError(
            f"{_printable(source)}: this is not valid XML ({err}); "
            "give the output of `virsh net-dumpxml NETWORK`."
        ) from None
    if root.tag != "network":
        raise NftfwdError(
            f"{_printable(source)}: this is not a libvirt network's XML "
            f"(its root element is <{_printable(root.tag)}>, not <network>)."
        )
    return root


def _parse_network(source: str, text: str) -> _Network | str:
    """The network in `text`, or a sentence saying why it was skipped."""
    root = _parse_xml(source, text)
    name = _printable(root.findtext("name") or "").strip() or "(unnamed)"
    what = f"libvirt network {name!r} ({_printable(source)})"
    forward = root.find("forward")
    mode = None if forward is None else forward.get("mode", "nat")
    if mode in _DIRECT_MODES:
        return (
            f"{what} skipped: in forward mode {mode!r} its guests sit directly on a "
            "physical network, so there is nothing for nftfwd to forward."
        )
    bridge_el = root.find("bridge")
    bridge = None if bridge_el is None else bridge_el.get("name")
    if not bridge:
        return f"{what} skipped: it has no <bridge name=...> element."
    if not _IFNAME.fullmatch(bridge) or bridge in (".", ".."):
        return f"{what} skipped: its bridge name {_printable(bridge)!r} is not an interface name."
    network = _Network(name, _printable(source), bridge, mode)
    guests: dict[str, _Guest] = {}
    for version in (4, 6):
        ip_el = _pick_ip(root, version, network)
        if ip_el is not None:
            _add_ip(network, ip_el, version, guests)
    if network.subnet is None and network.subnet6 is None:
        return f"{what} skipped: it has no usable <ip> element, so no subnet for its guests."
    _label_guests(list(guests.values()))
    network.guests = list(guests.values())
    return network


def _address(text: str) -> IPv4Address | IPv6Address:
    """`ip_address(text)` without what the model refuses, ValueError for them too: IPv6
    scope ids (`fe80::1%eth0`) and IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`)."""
    if "%" in text:
        raise ValueError(f"{text!r} has a scope id")
    address = ip_address(text)
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        raise ValueError(f"{text!r} is IPv4-mapped")
    return address


def _ip_version(ip_el: ET.Element) -> int | None:
    family = ip_el.get("family")
    if family in ("ipv4", "ipv6"):
        return 4 if family == "ipv4" else 6
    try:
        return _address(ip_el.get("address", "")).version
    except ValueError:
        return None


def _pick_ip(root: ET.Element, version: int, network: _Network) -> ET.Element | None:
    """The one <ip> of this family the model can hold: the one with DHCP, else the first."""
    candidates = [el for el in root.findall("ip") if _ip_version(el) == version]
    if not candidates:
        return None
    chosen = next((el for el in candidates if el.find("dhcp") is not None), candidates[0])
    for other in candidates:
        if other is not chosen:
            network.notes.append(
                f"ignored <ip address={_printable(other.get('address', ''))!r}>: "
                f"a bridge has one IPv{version} subnet in the model."
            )
    return chosen


def _subnet(ip_el: ET.Element, version: int) -> Subnet:
    """The subnet of an <ip>, as libvirt computes it: netmask, else prefix, else default."""
    address = _address(ip_el.get("address", ""))
    if address.version != version:
        raise ValueError("family does not match the address")
    netmask, prefix = ip_el.get("netmask"), ip_el.get("prefix")
    if netmask is not None and version == 4:
        return ip_network(f"{address}/{netmask}", strict=False)
    if prefix is not None:
        return ip_network(f"{address}/{int(prefix)}", strict=False)
    if version == 6:
        return ip_network(f"{address}/64", strict=False)
    first = int(address) >> 24  # libvirt's classful default for IPv4 without a mask
    return ip_network(f"{address}/{8 if first < 128 else 16 if first < 192 else 24}", False)


def _add_ip(network: _Network, ip_el: ET.Element, version: int, guests: dict[str, _Guest]) -> None:
    try:
        subnet = _subnet(ip_el, version)
    except ValueError:
        network.notes.append(
            f"ignored <ip address={_printable(ip_el.get('address', ''))!r}>: "
            "not a valid address and netmask or prefix."
        )
        return
    if isinstance(subnet, IPv4Network):
        network.subnet = subnet
    else:
        network.subnet6 = subnet
    for host in ip_el.findall("dhcp/host"):
        _add_host(network, host, subnet, guests)


def _add_host(
    network: _Network, host: ET.Element, subnet: Subnet, guests: dict[str, _Guest]
) -> None:
    name, mac, duid = host.get("name"), host.get("mac"), host.get("id")
    if name:
        key, unnamed = name, ""
    elif mac:
        key, unnamed = f"mac-{mac.lower()}", f"mac {mac.lower()}"
    elif duid:
        key, unnamed = f"duid-{duid.lower()}", f"id {duid.lower()}"
    else:
        network.notes.append("ignored a DHCP <host> with neither name, mac nor id.")
        return
    raw_ip = host.get("ip", "")
    try:
        address = _address(raw_ip)
    except ValueError:
        address = None
    if (
        address is None
        or address.version != subnet.version
        or address not in subnet
        or address in (subnet.network_address, subnet.broadcast_address)
    ):
        network.notes.append(
            f"ignored DHCP host {_printable(key)!r}: its ip {_printable(raw_ip)!r} "
            f"is not a guest address in {subnet}."
        )
        return
    guest = guests.get(key)
    if guest is None or (guest.address if address.version == 4 else guest.address6):
        # A new guest; libvirt forbids the same name twice in one family, but if it
        # happens, the second entry becomes its own guest rather than overwriting.
        unique = key
        while unique in guests:
            unique += "+"
        guest = guests.setdefault(unique, _Guest(key, unnamed))
    if isinstance(address, IPv4Address):
        guest.address = address
    else:
        guest.address6 = address


def _label_guests(guests: list[_Guest]) -> None:
    """Give every guest a unique valid model name, saying where it differs from libvirt's."""
    taken: set[str] = set()
    for guest in guests:
        base = _sanitise(guest.key) or "guest"
        label, n = base, 1
        while label in taken:
            n += 1
            label = f"{base[: _NAME_MAX - len(str(n)) - 1]}-{n}"
        taken.add(label)
        guest.label = label
        if guest.unnamed:
            guest.comment = f"libvirt DHCP host without a name ({_printable(guest.unnamed)})"
        elif label != guest.key:
            guest.comment = f"libvirt name {_printable(guest.key)!r}"


# --- rendering -------------------------------------------------------------------------


def _network_section(network: _Network, first_example: int) -> _Section:
    mode = "none (isolated)" if network.mode is None else network.mode
    what = f"libvirt network {network.name!r} ({network.source}), forward mode {mode}."
    guests = [
        _GuestLines(
            _key(guest.label),
            guest.comment,
            None if guest.address is None else str(guest.address),
            None if guest.address6 is None else str(guest.address6),
            _example_port(n),
        )
        for n, guest in enumerate(network.guests, start=first_example)
    ]
    subnet: Subnet | None = network.subnet or network.subnet6
    assert subnet is not None
    bridge = _BridgeLines(
        key=_key(network.bridge),
        subnet=None if network.subnet is None else str(network.subnet),
        subnet6=None if network.subnet6 is None else str(network.subnet6),
        notes=[line for note in network.notes for line in _wrap(note, 8)],
        guests=guests,
        example_field="address" if subnet.version == 4 else "address6",
        example_address=_example_address(subnet),
        example_port=_example_port(first_example),
    )
    return _Section([*_wrap(what, 6), *_mode_advice(network)], bridge)


def _mode_advice(network: _Network) -> list[str]:
    """Comment lines (each after `# ` at the bridge's indent) on the network's mode."""
    if network.mode == "route":
        return _wrap(
            "Route mode: libvirt's rules let DNATed connections through. If your router "
            "routes this subnet to this host, you may want `masquerade: false`.",
            6,
        )
    if network.mode == "nat":
        why = (
            "WARNING: in NAT mode libvirt's own firewall rules reject new connections "
            "DNATed to its guests, so no forward to this network can work. Switch it to "
            "open mode, where libvirt adds no rules and nftfwd does the NAT:"
        )
    elif network.mode is None:
        why = (
            "WARNING: isolated (no <forward>): libvirt's own firewall rules reject all "
            "traffic between this bridge and other interfaces, so no forward can work. To "
            "forward to these guests, switch it to open mode (the guests then also reach "
            "the outside through nftfwd's masquerade):"
        )
    else:
        return []
    out = _wrap(why, 6)
    for step in open_mode_steps(network.name, isolated=network.mode is None):
        if step.startswith("# "):  # prose: wrapped; commands stay whole, to be copied
            out += ["  " + line for line in _wrap(step[2:], 6, width=86)]
        else:
            out.append(f"  {step}")
    return [*out, "    (guests running on it may need a restart to get their link back)"]


# Replaces the network's <forward> element, in both shapes libvirt shows it: `virsh
# net-edit` and `net-dumpxml --inactive` of a network defined from Debian's default show
# `<forward mode='nat'/>`, a running network's `net-dumpxml` the block `<forward
# mode='nat'> <nat>...</nat> </forward>`. `-z` reads the file as one line, so the block
# may span lines; `( [^>]*)?` keeps <forwarder> (in <dns>) out of it.
_SED_NAT_TO_OPEN = (
    "sed -z -i -E \"s#<forward( [^>]*)?/>|<forward( [^>]*)?>.*</forward>#<forward mode='open'/>#\""
)
# An isolated network has no <forward>: add one right after its <name>.
_SED_ADD_OPEN = "sed -i \"s#</name>#&<forward mode='open'/>#\""


def open_mode_steps(network: str, *, isolated: bool = False) -> list[str]:
    """Shell lines that switch libvirt network `network` to open mode.

    First the commands, runnable as printed (dump the persistent XML, edit its <forward>
    element, define it again, restart the network), then the interactive way as a
    comment. Used by `libvirt import` and by doctor's libvirt findings alike.
    """
    name = shlex.quote(network)
    xml = shlex.quote(f"/tmp/{network}.xml")
    if isolated:
        edit, interactive = _SED_ADD_OPEN, "add the element <forward mode='open'/>"
    else:
        edit = _SED_NAT_TO_OPEN
        interactive = (
            "replace <forward mode='nat'/> (or the block <forward mode='nat'> ... "
            "</forward>) with <forward mode='open'/>"
        )
    return [
        f"virsh net-dumpxml --inactive {name} > {xml}",
        f"{edit} {xml}",
        f"virsh net-define {xml}",
        f"virsh net-destroy {name} && virsh net-start {name}",
        f"# or interactively: virsh net-edit {name}, {interactive}; then restart it as above",
    ]


def _example_port(n: int) -> int:
    return 8000 + n if 8000 + n <= 65535 else 8000


def _example_address(subnet: Subnet) -> str:
    if subnet.num_addresses > 16:
        return str(subnet.network_address + 10)
    return str(subnet.network_address + 1)


# --- YAML text -------------------------------------------------------------------------


def _sanitise(name: str) -> str:
    """`name` in the model's charset for names (letters, digits, '.', '_', '-')."""
    return _NAME_BAD.sub("-", name).strip("-")[:_NAME_MAX]


def _printable(text: str) -> str:
    """`text` safe inside a YAML comment: no line breaks or other control characters."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _key(name: str) -> str:
    """A mapping key (already sanitised) as YAML text: plain unless YAML would misread it."""
    return name if yaml.safe_load(f"{name}: 0") == {name: 0} else f'"{name}"'


def _flow_item(name: str) -> str:
    return name if yaml.safe_load(f"[{name}]") == [name] else f'"{name}"'


def _wrap(text: str, indent: int, width: int = 88) -> list[str]:
    """`text` wrapped into the lines of a YAML comment at `indent` (`# ` and the lines
    together at most `width` columns), without the indent and the `# `."""
    room = width - indent - 2
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > room:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return lines
