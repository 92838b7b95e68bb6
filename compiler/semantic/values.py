"""Pure value parsers: one value of a model file to its typed value, or a Refusal saying why not.

To add a parser (for example a forward's `comment`): write `def comment(text: str) ->
str | Refusal` here, and call it in the entity's builder in tree.py: a Refusal goes to
`self.refuse(path, refusal)`, which reports it at the key's line and path.

Each parser takes what the schema let through (so its type is known) and nothing else: no
key path, no document. They know nothing of other values; how values relate (a guest's
address in its bridge's subnet) is rules.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from socket import AF_INET, inet_pton
from typing import cast

from nftfwd.errors import echo
from nftfwd.keywords import is_reserved
from nftfwd.model import IPAddress, IPNetwork, PortRange, Proto

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


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a value is refused, and what to write instead; the builder adds where."""

    message: str


def version(value: int, written: str | None) -> int | Refusal:
    """`version` (the schema took only 1), refused when YAML read it from another form."""
    if written is not None:
        return Refusal(f"{read_as(written, value)}; write 1")
    return value


def table(name: str) -> str | Refusal:
    """`table` (the schema checked its characters): not a word nft reserves."""
    if is_reserved(name):
        return Refusal(
            f"'{name}' is a word nft reserves and cannot name a table; "
            "choose another name, for example 'nftfwd'"
        )
    return name


def _parse_address(text: str) -> IPAddress:
    """`ip_address(text)`, four times as fast for the dotted-quad IPv4 most addresses are.

    inet_pton takes exactly the dotted quads ipaddress takes (four decimal octets of at
    most 255, no leading zeros); everything else goes to ipaddress.
    """
    try:
        return IPv4Address(inet_pton(AF_INET, text))
    except (OSError, TypeError, ValueError):
        return ip_address(text)


def _not_plain_ipv6(value: IPAddress | IPNetwork, text: str) -> Refusal | None:
    """Why an IPv6 address or prefix is not one nft and the kernel take as written: a
    scope id (`%eth0`: nft would look it up as a host name), or IPv4-mapped
    (`::ffff:192.0.2.1`: the kernel lists it in IPv4 form, so a diff never settles)."""
    if value.version != 6:
        return None
    if "%" in text:
        bare, _, rest = text.partition("%")
        scope, slash, length = rest.partition("/")
        return Refusal(
            f"'{echo(text)}' has a scope id ('%{echo(scope)}'), which nftables cannot "
            f"use; write it without, '{echo(bare + slash + length)}'"
        )
    if isinstance(value, IPv6Address) and value.ipv4_mapped is not None:
        return Refusal(
            f"'{echo(text)}' is an IPv4-mapped IPv6 address; write the IPv4 address "
            f"{value.ipv4_mapped} in an IPv4 key instead"
        )
    if isinstance(value, IPv6Network) and value.subnet_of(_IPV4_MAPPED):
        mapped = IPv4Network((int(value.network_address) & 0xFFFFFFFF, value.prefixlen - 96))
        return Refusal(
            f"'{echo(text)}' is an IPv4-mapped IPv6 prefix; write the IPv4 prefix {mapped} instead"
        )
    return None


def address(text: str, version: int | None = None) -> IPAddress | Refusal:
    """An IP address (of IP `version`, when given)."""
    try:
        value = _parse_address(text)
    except ValueError:
        return Refusal(
            f"'{echo(text)}' is not an IP address; write one such as 192.0.2.10 or \"2001:db8::10\""
        )
    refusal = _not_plain_ipv6(value, text)
    if refusal is not None:
        return refusal
    if version is not None and value.version != version:
        return Refusal(
            f"'{echo(text)}' is not an IPv{version} address; write an IPv{version} address here"
        )
    return value


def host_address(text: str) -> IPAddress | Refusal:
    """An address clients reach the host at: a host's `addresses`, a forward's `address`."""
    value = address(text)
    if isinstance(value, Refusal):
        return value
    if value.is_loopback or value.is_link_local or value.is_multicast or value.is_unspecified:
        return Refusal(
            f"'{echo(text)}' cannot be a host address for forwards (loopback, "
            "link-local, multicast or unspecified); use an address clients reach"
        )
    return value


def prefix(text: str, version: int | None = None) -> IPNetwork | Refusal:
    """An IP prefix without host bits (of IP `version`, when given): a forward's `sources`."""
    try:
        value = ip_network(text)
    except ValueError:
        try:
            loose = ip_network(text, strict=False)
        except ValueError:
            return Refusal(f"'{echo(text)}' is not an IP prefix; write one such as 192.0.2.0/24")
        return Refusal(f"'{echo(text)}' has host bits set; write the prefix as '{loose}'")
    refusal = _not_plain_ipv6(value, text)
    if refusal is not None:
        return refusal
    if version is not None and value.version != version:
        return Refusal(
            f"'{echo(text)}' is not an IPv{version} prefix; write an IPv{version} prefix here"
        )
    return value


def bridge_subnet(text: str, version: int) -> IPNetwork | Refusal:
    """A bridge's `subnet` (4) or `subnet6` (6): a unicast range guests can have addresses in."""
    subnet = prefix(text, version)
    if isinstance(subnet, Refusal):
        return subnet
    example = "192.168.122.0/24" if version == 4 else "fd00:122::/64"
    if subnet.prefixlen == 0:
        return Refusal(
            f"{subnet} is the whole IPv{version} address space, not a subnet of guests; "
            f"write the bridge's own subnet, for example {example}"
        )
    for reserved, what in _NOT_FOR_GUESTS:
        if reserved.version == version and subnet.overlaps(reserved):
            return Refusal(
                f"{subnet} is not a subnet for guests: it overlaps {reserved} ({what}); "
                f"use a private unicast range such as {example}"
            )
    return subnet


def ports(value: int | float | str, written: str | None) -> PortRange | Refusal:
    """A forward's `port` or `to`: one port or a range "A-B" (the schema took the form);
    `written`: the text YAML 1.1 read a number from, when not plain decimal digits."""
    if written is not None and not isinstance(value, str):  # 0x50, 0777, 1:20, 8_080, +80
        return Refusal(_port_read_as(written, value))
    if isinstance(value, float):  # JSON Schema's "integer" takes 8080.0 too
        return Refusal(f"port {value} has a decimal point; write it as {int(value)}")
    if isinstance(value, int):
        first = last = value
    else:
        first_text, _, last_text = value.partition("-")
        first, last = int(first_text), int(last_text or first_text)
    if not (1 <= first <= 65535 and 1 <= last <= 65535):
        return Refusal(f"port {value} is out of range; ports are 1 to 65535")
    if first > last:
        return Refusal(f"range '{value}' runs backwards; write it as '{last}-{first}'")
    return PortRange(first, last)


def protos(value: str | list[str]) -> tuple[Proto, ...]:
    """A forward's `proto` (the schema took only tcp and udp): one, or a list, sorted."""
    return cast(tuple[Proto, ...], tuple(sorted({value} if isinstance(value, str) else set(value))))


def read_as(text: str, value: int | float) -> str:
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
    read = read_as(text, value)
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
