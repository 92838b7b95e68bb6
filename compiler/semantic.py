"""Stage 2b: the rules of model.md that a schema cannot express; builds the typed model."""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from socket import AF_INET, inet_pton
from typing import Any, cast

from nftfwd.claims import Claim, Reach, reaches
from nftfwd.errors import MAX_REPORTED, ModelError, Problem, echo
from nftfwd.keywords import is_reserved
from nftfwd.model import (
    Bridge,
    Family,
    Forward,
    Guest,
    Host,
    IPAddress,
    IPNetwork,
    Model,
    PortRange,
    Proto,
    family_of,
)
from nftfwd.source import Document, KeyPath, format_path

DEFAULT_TABLE = "nftfwd"
FAMILY_NAMES = {"ip": "IPv4", "ip6": "IPv6"}
# Problems kept for the report: the report shows the first MAX_REPORTED by location,
# and the checker finds them roughly in file order, so a margin is enough.
_KEPT_PROBLEMS = 20 * MAX_REPORTED

# Ranges a bridge subnet may not touch: guests need unicast addresses routed like any
# other (0.0.0.0/0 as a subnet would drop every forwarded connection of the host).
_NOT_FOR_GUESTS: tuple[tuple[IPNetwork, str], ...] = (
    (IPv4Network("0.0.0.0/8"), "'this network'"),
    (IPv4Network("127.0.0.0/8"), "loopback"),
    (IPv4Network("169.254.0.0/16"), "link-local"),
    (IPv4Network("224.0.0.0/4"), "multicast"),
    (IPv4Network("240.0.0.0/4"), "reserved and broadcast"),
    (IPv6Network("::/127"), "unspecified and loopback"),
    (IPv6Network("::ffff:0:0/96"), "IPv4-mapped"),
    (IPv6Network("fe80::/10"), "link-local"),
    (IPv6Network("ff00::/8"), "multicast"),
)
_IPV4_MAPPED = IPv6Network("::ffff:0:0/96")
# The longest comment nft takes, in bytes of UTF-8 (NFTNL_UDATA_COMMENT_MAXLEN); its JSON
# input does not check it (longer ones load, or make nft abort), so nftfwd does.
MAX_COMMENT_BYTES = 128


def build_model(doc: Document) -> Model:
    """Turn shape-checked data into the typed model, or raise every problem found."""
    checker = _Checker(doc)
    model = checker.model()
    if checker.problems:
        raise ModelError(checker.problems, checker.failures - len(checker.problems))
    return model


def _parse_address(text: str) -> IPAddress:
    """`ip_address(text)`, four times as fast for the dotted-quad IPv4 most addresses are.

    inet_pton takes exactly the dotted quads ipaddress takes (four decimal octets of at
    most 255, no leading zeros); everything else goes to ipaddress.
    """
    try:
        return IPv4Address(inet_pton(AF_INET, text))
    except (OSError, TypeError, ValueError):
        return ip_address(text)


def comment_problems(text: str) -> list[str]:
    """What keeps `text` from being an nft comment, each with what to do; empty if it is
    one. It goes into the ruleset between double quotes, which nft strings cannot escape:
    so no double quote, and printable text only (no line break, no control character,
    no invisible or bidirectional formatting that would make it read otherwise)."""
    problems = []
    if not text:
        problems.append("the comment is empty; write some text, or remove the key")
    if '"' in text:
        problems.append(
            'the comment holds a double quote ("), which an nft string cannot hold; '
            "write single quotes (') instead"
        )
    hidden = sorted({c for c in text if not c.isprintable()})
    if hidden:
        shown = ", ".join(f"U+{ord(c):04X}" for c in hidden[:5])
        problems.append(
            f"the comment holds characters that are not printable ({shown}); "
            "write it as printable text on one line"
        )
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_COMMENT_BYTES:
        problems.append(
            f"the comment is {size} bytes long in UTF-8, and nft takes at most "
            f"{MAX_COMMENT_BYTES}; shorten it by {size - MAX_COMMENT_BYTES} "
            + ("byte" if size - MAX_COMMENT_BYTES == 1 else "bytes")
        )
    return problems


class _Checker:
    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.failures = 0  # problems found, kept or not
        # Each text parsed once: forwards repeat host addresses and sources.
        self.parsed_addresses: dict[str, IPAddress] = {}
        self.parsed_networks: dict[str, IPNetwork] = {}
        # Equal values are one object: thousands of forwards may send tcp to port 80, and
        # every object of the model is one more for the garbage collector to walk.
        self.port_ranges: dict[tuple[int, int], PortRange] = {}
        self.protos: dict[tuple[str, ...], tuple[str, ...]] = {}

    def fail(self, path: KeyPath, message: str) -> None:
        self.failures += 1
        if len(self.problems) < _KEPT_PROBLEMS:
            self.problems.append(Problem(self.doc.location(path), format_path(path), message))

    def fail_forward(self, forward: Forward, message: str) -> None:
        self.failures += 1
        if len(self.problems) < _KEPT_PROBLEMS:
            self.problems.append(Problem(forward.location, forward.path, message))

    def model(self) -> Model:
        data = self.doc.data
        if ("version",) in self.doc.written:
            self.fail(("version",), f"{_read_as(self.doc.written[('version',)], 1)}; write 1")
        table = data.get("table", DEFAULT_TABLE)
        if is_reserved(table):
            self.fail(
                ("table",),
                f"'{table}' is a word nft reserves and cannot name a table; "
                "choose another name, for example 'nftfwd'",
            )
        hosts = tuple(
            self.host(name, spec, ("hosts", name)) for name, spec in data["hosts"].items()
        )
        return Model(version=data["version"], table=table, hosts=hosts, source=self.doc.path)

    # -- addresses ---------------------------------------------------------------

    def address(self, text: str, path: KeyPath, version: int | None = None) -> IPAddress | None:
        value = self.parsed_addresses.get(text)
        if value is None:
            try:
                value = _parse_address(text)
            except ValueError:
                self.fail(
                    path,
                    f"'{echo(text)}' is not an IP address; "
                    'write one such as 192.0.2.10 or "2001:db8::10"',
                )
                return None
            if not self.plain_ipv6(value, text, path):
                return None
            self.parsed_addresses[text] = value
        if version is not None and value.version != version:
            self.fail(
                path,
                f"'{echo(text)}' is not an IPv{version} address; "
                f"write an IPv{version} address here",
            )
            return None
        return value

    def plain_ipv6(self, value: IPAddress | IPNetwork, text: str, path: KeyPath) -> bool:
        """Whether an IPv6 address or prefix is one nft and the kernel take as written:
        no scope id (`%eth0`: nft would look it up as a host name), and not IPv4-mapped
        (`::ffff:192.0.2.1`: the kernel lists it in IPv4 form, so a diff never settles)."""
        if value.version != 6:
            return True
        if "%" in text:
            address, _, rest = text.partition("%")
            scope, slash, length = rest.partition("/")
            self.fail(
                path,
                f"'{echo(text)}' has a scope id ('%{echo(scope)}'), which nftables cannot "
                f"use; write it without, '{echo(address + slash + length)}'",
            )
            return False
        if isinstance(value, IPv6Address) and value.ipv4_mapped is not None:
            self.fail(
                path,
                f"'{echo(text)}' is an IPv4-mapped IPv6 address; write the IPv4 address "
                f"{value.ipv4_mapped} in an IPv4 key instead",
            )
            return False
        if isinstance(value, IPv6Network) and value.subnet_of(_IPV4_MAPPED):
            mapped = IPv4Network((int(value.network_address) & 0xFFFFFFFF, value.prefixlen - 96))
            self.fail(
                path,
                f"'{echo(text)}' is an IPv4-mapped IPv6 prefix; write the IPv4 prefix "
                f"{mapped} instead",
            )
            return False
        return True

    def network(self, text: str, path: KeyPath, version: int | None = None) -> IPNetwork | None:
        value = self.parsed_networks.get(text)
        if value is None:
            try:
                value = ip_network(text)
            except ValueError:
                try:
                    loose = ip_network(text, strict=False)
                except ValueError:
                    self.fail(
                        path, f"'{echo(text)}' is not an IP prefix; write one such as 192.0.2.0/24"
                    )
                else:
                    self.fail(
                        path, f"'{echo(text)}' has host bits set; write the prefix as '{loose}'"
                    )
                return None
            if not self.plain_ipv6(value, text, path):
                return None
            self.parsed_networks[text] = value
        if version is not None and value.version != version:
            self.fail(
                path,
                f"'{echo(text)}' is not an IPv{version} prefix; write an IPv{version} prefix here",
            )
            return None
        return value

    def bridge_subnet(self, text: str, path: KeyPath, version: int) -> IPNetwork | None:
        """A bridge's subnet: a unicast range guests can have addresses in."""
        subnet = self.network(text, path, version)
        if subnet is None:
            return None
        if subnet.prefixlen == 0:
            self.fail(
                path,
                f"{subnet} is the whole IPv{version} address space, not a subnet of guests; "
                "write the bridge's own subnet, for example "
                + ("192.168.122.0/24" if version == 4 else "fd00:122::/64"),
            )
            return None
        for reserved, what in _NOT_FOR_GUESTS:
            if reserved.version == version and subnet.overlaps(reserved):
                self.fail(
                    path,
                    f"{subnet} is not a subnet for guests: it overlaps {reserved} ({what}); "
                    "use a private unicast range such as "
                    + ("192.168.122.0/24" if version == 4 else "fd00:122::/64"),
                )
                return None
        return subnet

    def host_address(self, text: str, path: KeyPath) -> IPAddress | None:
        value = self.address(text, path)
        if value is not None and (
            value.is_loopback or value.is_link_local or value.is_multicast or value.is_unspecified
        ):
            self.fail(
                path,
                f"'{echo(text)}' cannot be a host address for forwards (loopback, "
                "link-local, multicast or unspecified); use an address clients reach",
            )
            return None
        return value

    def comment(self, spec: dict[str, Any], path: KeyPath) -> str | None:
        """The `comment` of a guest or forward, if it has one that nft can carry."""
        if "comment" not in spec:
            return None
        text: str = spec["comment"]
        problems = comment_problems(text)
        for problem in problems:
            self.fail((*path, "comment"), problem)
        return None if problems else text

    # -- hosts -------------------------------------------------------------------

    def host(self, name: str, spec: dict[str, Any], path: KeyPath) -> Host:
        failures_before = self.failures
        uplinks = tuple(spec["uplinks"])
        addresses = tuple(
            a
            for i, text in enumerate(spec.get("addresses", []))
            if (a := self.host_address(text, (*path, "addresses", i)))
        )
        bridges = tuple(
            self.bridge(bname, bspec, (*path, "bridges", bname))
            for bname, bspec in spec.get("bridges", {}).items()
        )
        host = Host(
            name=name,
            uplinks=uplinks,
            addresses=addresses,
            hairpin=spec.get("hairpin", True),
            bridges=bridges,
        )
        for bridge in bridges:
            if bridge.name in uplinks:
                self.fail(
                    (*path, "bridges", bridge.name),
                    f"'{bridge.name}' is also an uplink; "
                    "an interface is either an uplink or faces guests, not both",
                )
        if self.failures == failures_before:
            # Cross-checks only on values that parsed, so one typo is reported once.
            self.check_subnets(host, path)
            self.check_guest_addresses(host, path)
            self.check_forwards(host, path)
        return host

    def check_subnets(self, host: Host, path: KeyPath) -> None:
        seen: list[tuple[IPNetwork, str]] = []
        for bridge in host.bridges:
            for key, subnet in (("subnet", bridge.subnet), ("subnet6", bridge.subnet6)):
                if subnet is None:
                    continue
                for other, other_bridge in seen:
                    if subnet.version == other.version and subnet.overlaps(other):
                        self.fail(
                            (*path, "bridges", bridge.name, key),
                            f"{subnet} overlaps {other} of bridge '{other_bridge}'; "
                            "give each bridge its own subnet",
                        )
                seen.append((subnet, bridge.name))

    def check_guest_addresses(self, host: Host, path: KeyPath) -> None:
        owner: dict[IPAddress, str] = {}
        for bridge in host.bridges:
            for guest in bridge.guests:
                for key in ("address", "address6"):
                    value = getattr(guest, key)
                    if value is None:
                        continue
                    if value in owner:
                        self.fail(
                            (*path, "bridges", bridge.name, "guests", guest.name, key),
                            f"{value} is already the address of guest '{owner[value]}'; "
                            "give each guest its own address",
                        )
                    owner[value] = guest.name

    # -- bridges and guests --------------------------------------------------------

    def bridge(self, name: str, spec: dict[str, Any], path: KeyPath) -> Bridge:
        subnet = (
            self.bridge_subnet(spec["subnet"], (*path, "subnet"), 4) if "subnet" in spec else None
        )
        subnet6 = (
            self.bridge_subnet(spec["subnet6"], (*path, "subnet6"), 6)
            if "subnet6" in spec
            else None
        )
        guests = tuple(
            self.guest(
                gname,
                gspec,
                cast(IPv4Network | None, subnet),
                cast(IPv6Network | None, subnet6),
                spec,
                (*path, "guests", gname),
            )
            for gname, gspec in spec.get("guests", {}).items()
        )
        return Bridge(
            name=name,
            subnet=cast(IPv4Network | None, subnet),
            subnet6=cast(IPv6Network | None, subnet6),
            masquerade=spec.get("masquerade", True),
            guests=guests,
        )

    def guest_address(
        self,
        spec: dict[str, Any],
        key: str,
        subnet: IPNetwork | None,
        bridge_spec: dict[str, Any],
        path: KeyPath,
    ) -> IPAddress | None:
        if key not in spec:
            return None
        version = 4 if key == "address" else 6
        value = self.address(spec[key], (*path, key), version)
        subnet_key = "subnet" if version == 4 else "subnet6"
        if value is None:
            return None
        if subnet is None:
            if subnet_key not in bridge_spec:
                self.fail(
                    (*path, key),
                    f"the bridge has no {subnet_key}; add `{subnet_key}` "
                    f"to the bridge or remove `{key}`",
                )
            return None
        if value not in subnet:
            self.fail(
                (*path, key),
                f"{value} is outside the bridge's {subnet_key} {subnet}; use an address inside it",
            )
            return None
        if value == subnet.network_address or (
            version == 4 and subnet.prefixlen < 31 and value == subnet.broadcast_address
        ):
            self.fail(
                (*path, key),
                f"{value} is the network or broadcast address of {subnet}; "
                "use a host address inside it",
            )
            return None
        return value

    def guest(
        self,
        name: str,
        spec: dict[str, Any],
        subnet: IPv4Network | None,
        subnet6: IPv6Network | None,
        bridge_spec: dict[str, Any],
        path: KeyPath,
    ) -> Guest:
        address = self.guest_address(spec, "address", subnet, bridge_spec, path)
        address6 = self.guest_address(spec, "address6", subnet6, bridge_spec, path)
        forwards = tuple(
            f
            for i, fspec in enumerate(spec.get("forwards", []))
            if (f := self.forward(fspec, (*path, "forwards", i))) is not None
        )
        return Guest(
            name=name,
            address=cast(IPv4Address | None, address),
            address6=cast(IPv6Address | None, address6),
            forwards=forwards,
            comment=self.comment(spec, path),
        )

    # -- forwards --------------------------------------------------------------------

    def ports(self, value: int | float | str, path: KeyPath) -> PortRange | None:
        written = self.doc.written.get(path)
        if written is not None and not isinstance(
            value, str
        ):  # 0x50, 0777, 1:20, 8_080, +80 (the schema took the number)
            self.fail(path, _port_read_as(written, value))
            return None
        if isinstance(value, float):  # JSON Schema's "integer" takes 8080.0 too
            self.fail(path, f"port {value} has a decimal point; write it as {int(value)}")
            return None
        if isinstance(value, int):
            first = last = value
        else:
            first_text, _, last_text = value.partition("-")
            first, last = int(first_text), int(last_text or first_text)
        if not (1 <= first <= 65535 and 1 <= last <= 65535):
            self.fail(path, f"port {value} is out of range; ports are 1 to 65535")
            return None
        if first > last:
            self.fail(path, f"range '{value}' runs backwards; write it as '{last}-{first}'")
            return None
        ports = self.port_ranges.get((first, last))
        if ports is None:
            ports = self.port_ranges[(first, last)] = PortRange(first, last)
        return ports

    def forward(self, spec: dict[str, Any], path: KeyPath) -> Forward | None:
        port = self.ports(spec["port"], (*path, "port"))
        to = self.ports(spec["to"], (*path, "to")) if "to" in spec else port
        if port is not None and to is not None and to.size not in (1, port.size):
            self.fail(
                (*path, "to"),
                f"'to' covers {to.size} ports but 'port' covers {port.size}; give one port "
                f"(every port of the range goes to it) or a range of {port.size} ports",
            )
            return None
        proto_spec = spec.get("proto", "tcp")
        protos = tuple(sorted({proto_spec} if isinstance(proto_spec, str) else set(proto_spec)))
        protos = self.protos.setdefault(protos, protos)
        source_texts = spec.get("sources", ())
        sources = tuple(
            s
            for i, text in enumerate(source_texts)
            if (s := self.network(text, (*path, "sources", i))) is not None
        )
        if len(sources) > 1:
            sources = tuple(sorted(sources, key=lambda n: (n.version, n)))
        address = (
            self.host_address(spec["address"], (*path, "address")) if "address" in spec else None
        )
        comment = self.comment(spec, path)
        if port is None or to is None or len(sources) != len(source_texts):
            return None
        if "address" in spec and address is None:
            return None
        if "comment" in spec and comment is None:
            return None
        return Forward(
            port=port,
            to=to,
            protos=cast(tuple[Proto, ...], protos),
            sources=sources,
            address=address,
            snat=spec.get("snat", False),
            path=format_path(path),
            location=self.doc.location(path),
            comment=comment,
        )

    def check_forwards(self, host: Host, path: KeyPath) -> None:
        claims: dict[tuple[Family, Proto], list[Claim]] = defaultdict(list)
        found: list[Reach] = []
        for bridge, guest, forward in host.forwards():
            families = reaches(host, bridge, guest, forward)
            found += families
            if forward.address is not None:
                listed = host.addresses_in(family_of(forward.address))
                if listed and forward.address not in listed:
                    index = guest.forwards.index(forward)  # all parsed: the spec's index
                    at = (*path, "bridges", bridge.name, "guests", guest.name, "forwards", index)
                    self.fail(
                        (*at, "address"),
                        f"address {forward.address} is not one of the host's "
                        f"addresses ({', '.join(map(str, listed))}); name one of them",
                    )
                    continue
            if not families:
                self.fail_forward(
                    forward,
                    f"this forward exists in no address family: guest "
                    f"'{guest.name}' has no address in the family of its "
                    "`address`/`sources`; fix the guest's addresses or the forward",
                )
                continue
            for reach in families:
                for claim in reach.claims():
                    claims[(reach.family, claim.proto)].append(claim)
        reported: set[tuple[int, int]] = set()
        for group in claims.values():
            for first, second in _overlaps(group):
                pair = (id(first.forward), id(second.forward))
                if pair not in reported:
                    reported.add(pair)
                    self.fail_forward(second.forward, _conflict_message(first, second))
        self.check_snat_agreement(found)

    def check_snat_agreement(self, found: list[Reach]) -> None:
        """snat is decided on the guest's side of the DNAT, so forwards that meet there
        agree. Each pair of forwards that disagrees is reported once."""
        by_target: dict[tuple[IPAddress, Proto, int], Forward] = {}
        reported: set[tuple[int, int]] = set()
        for reach in found:
            forward, target, to = reach.forward, reach.target, reach.forward.to
            ends = (to.first,) if to.first == to.last else (to.first, to.last)
            for proto in forward.protos:
                for port in ends:
                    other = by_target.setdefault((target, proto, port), forward)
                    pair = (id(other), id(forward))
                    if other.snat != forward.snat and pair not in reported:
                        reported.add(pair)
                        self.fail_forward(
                            forward,
                            f"reaches {target} {proto}/{port} like "
                            f"{other.path} (line {_line(other)}), but only one of "
                            "them sets snat; set snat the same on both",
                        )


def _read_as(text: str, value: int | float) -> str:
    """What YAML 1.1 made of a number not written in plain decimal digits."""
    unsigned = text.lstrip("+-")
    if ":" in text:
        form = "the base-60 number"
    elif unsigned[:2] in ("0x", "0X"):
        form = "the hexadecimal number"
    elif unsigned[:2] in ("0b", "0B"):
        form = "the binary number"
    elif unsigned[:1] == "0" and unsigned.strip("0_").isdigit():
        form = "the octal number"
    else:
        form = "the number"
    return f"YAML 1.1 reads {echo(text)} as {form} {value}, not as written"


def _port_read_as(text: str, value: int | float) -> str:
    """The problem with a port YAML 1.1 read from another form than decimal digits,
    and the decimal to write."""
    read = _read_as(text, value)
    if ":" in text and text.count(":") == 1 and text.replace(":", "").isdigit():
        first, last = text.split(":")  # iptables' syntax for a range
        return f'{read}; write the range as "{int(first)}-{int(last)}" (in quotes), or {value}'
    digits = text.lstrip("+").replace("_", "")
    if digits.isdigit() and digits.startswith("0") and int(digits) != value:
        return f"{read}; write {int(digits)} (no leading zero), or {value} if you meant that"
    if isinstance(value, float):
        if value.is_integer():
            return f"{read}; write {int(value)}"
        return f"{read}; write a whole number of 1-65535"
    return f"{read}; write {value}"


def _line(forward: Forward) -> int:
    return forward.location.line if forward.location else 0


def _overlaps(claims: list[Claim]) -> Iterator[tuple[Claim, Claim]]:
    """Pairs of claims on overlapping ports whose addresses collide, in one sweep."""
    active: list[tuple[int, int, Claim]] = []  # heap of (last port, order, claim)
    # How many active claims there are at each address (None: any host address): a claim
    # no active one can collide with is passed without a look at them, so thousands of
    # forwards on one port, each at its own host address, cost no more than one each.
    active_at: Counter[IPAddress | None] = Counter()
    # By first port, then as listed (the sort is stable); the index breaks ties in the heap.
    for order in sorted(range(len(claims)), key=lambda i: claims[i].ports.first):
        claim = claims[order]
        while active and active[0][0] < claim.ports.first:
            active_at[heapq.heappop(active)[2].address] -= 1
        if claim.address is None or active_at[None] or active_at[claim.address]:
            for _, _, earlier in active:
                if _collide(earlier, claim):
                    first, second = sorted((earlier, claim), key=lambda c: _line(c.forward))
                    yield first, second
                    break
        heapq.heappush(active, (claim.ports.last, order, claim))
        active_at[claim.address] += 1


def _collide(earlier: Claim, claim: Claim) -> bool:
    """Whether two claims on overlapping ports would take the same packets."""
    if earlier.forward is claim.forward:
        return False
    return earlier.address is None or claim.address is None or earlier.address == claim.address


def _conflict_message(first: Claim, second: Claim) -> str:
    def where(claim: Claim) -> str:
        if claim.address is None:
            return f"any {FAMILY_NAMES[claim.family]} host address"
        return str(claim.address)

    return (
        f"{second.proto} port {second.ports} on {where(second)} is also claimed by "
        f"{first.forward.path} (line {_line(first.forward)}, port {first.ports} on "
        f"{where(first)}); give one of them another port or host address"
    )
