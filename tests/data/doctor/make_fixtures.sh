#!/bin/sh
# Regenerates the rulesets that tests/doctor/test_doctor_ruleset.py reads.
#
# Each fixture is captured from a real kernel: the shapes of other tools' rules (the
# files in setups/, which tests/e2e/test_doctor_kernel.py loads too) are loaded, next to
# nftfwd's own table for scenarios/seed004-ssh-2222.yaml
# (golden/seed004-ssh-2222.localhost.nft), into a throwaway user and network
# namespace (`unshare -Urn`, nothing on the host is touched), and the kernel's view
# is saved twice:
#   NAME.json         `nft -j list ruleset`  (what doctor analyses)
#   NAME.ruleset.txt  `nft -a list ruleset`  (text with handles: the only place where
#                     iptables-nft's `xt` matches show what they match, e.g. ct state)
#
# Fixtures:
#   libvirt-iptables  libvirt's iptables backend for NAT network virbr0 192.168.122.0/24
#                     (LIBVIRT_FWI/FWO/FWX/INP/OUT, nat and mangle LIBVIRT_PRT), via iptables-nft
#   libvirt-nftables  libvirt >= 9 nftables backend: table ip libvirt_network (and ip6)
#   docker            Docker 28: FORWARD policy DROP, DOCKER-USER, DOCKER-FORWARD, a published port
#   admin-policy-drop an admin's table inet filter whose forward chain has policy drop
#   healthy           only an unrelated table of the admin's (and nftfwd's own)
#   dnat-conflict     an Incus-like table that DNATs tcp port 2222 too
#   docker-fixed, admin-policy-drop-fixed
#                     the same after running the fix doctor prints for them (the commands
#                     are in setups/*-fix.sh; the tests check that doctor still prints them)
#
# It also captures what tests/doctor/test_doctor_host.py feeds the host probes: iproute2's JSON
# (`ip -d -j addr`, `ip -j neigh`, `ip -j route show default`, `bridge -j fdb`) and
# /proc/net/{tcp,tcp6,udp,udp6} of a namespace with bridges, guests' neighbour entries
# and local listeners, saved as host-*.json and host-proc-net-*.
#
# Usage: tests/data/doctor/make_fixtures.sh   (from anywhere; needs unshare, nft, iptables-nft)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
own="$root/golden/seed004-ssh-2222.localhost.nft"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# capture NAME SETUP...: loads each SETUP file of setups/ into a fresh namespace by its
# ending (.rules: iptables-nft-restore, .nft: nft -f, .sh: shell commands), then nftfwd's
# table, and saves the ruleset as NAME.json and NAME.ruleset.txt
capture() {
    name=$1
    shift
    unshare -Urn sh -eu -c '
        out=$1 own=$2
        shift 2
        ip link add virbr0 type bridge
        for setup; do
            case $setup in
                *.rules) iptables-nft-restore < "$setup" ;;
                *.nft) nft -f "$setup" ;;
                *.sh) . "$setup" ;;
                *) echo "$setup: not .rules, .nft or .sh" >&2; exit 1 ;;
            esac
        done
        nft -f "$own"
        nft -j list ruleset > "$out.json"
        nft -a list ruleset > "$out.ruleset.txt" 2>/dev/null
    ' capture "$work/$name" "$own" "$@"
    python3 -m json.tool --indent 1 "$work/$name.json" > "$here/$name.json"
    cp "$work/$name.ruleset.txt" "$here/$name.ruleset.txt"
    echo "wrote $here/$name.json"
}

setups="$here/setups"
capture libvirt-iptables "$setups/libvirt-iptables.rules"
capture libvirt-nftables "$setups/libvirt-nftables.nft"
capture docker "$setups/docker.rules"
capture admin-policy-drop "$setups/admin-policy-drop.nft"
capture healthy "$setups/healthy.nft"
capture dnat-conflict "$setups/dnat-conflict.nft"
capture docker-fixed "$setups/docker.rules" "$setups/docker-fix.sh"
capture admin-policy-drop-fixed "$setups/admin-policy-drop.nft" "$setups/admin-policy-drop-fix.sh"

# --- what the host probes read, from a namespace shaped like a small hypervisor ---
unshare -Urn sh -eu -c '
    out=$1
    link() { ip link add "$1" type veth peer name "$2"; ip link set "$1" up; ip link set "$2" up; }
    ip link set lo up
    ip link add virbr0 type bridge
    ip link set virbr0 up
    ip addr add 192.168.122.1/24 dev virbr0
    link vnet0 g0
    link vnet1 g1
    ip link set vnet0 master virbr0
    ip link set vnet1 master virbr0
    ip link set dev vnet1 type bridge_slave hairpin on
    ip link add virbr1 type bridge                  # exists, administratively down
    link eno1 wan1
    ip addr add 203.0.113.10/24 dev eno1
    ip route add default via 203.0.113.1
    link eno2 wan2                                  # a second uplink, no default route
    ip addr add 198.51.100.10/24 dev eno2
    # guest centos (192.168.122.133) answers behind port vnet0 (hairpin off)
    ip neigh replace 192.168.122.133 lladdr 52:54:00:00:01:33 dev virbr0 nud reachable
    bridge fdb replace 52:54:00:00:01:33 dev vnet0 master dynamic
    # guest web (192.168.122.140) answers behind port vnet1 (hairpin on)
    ip neigh replace 192.168.122.140 lladdr 52:54:00:00:01:40 dev virbr0 nud reachable
    bridge fdb replace 52:54:00:00:01:40 dev vnet1 master dynamic
    # 192.168.122.134 does not answer; 192.168.122.135 answers on the uplink
    ip neigh replace 192.168.122.134 dev virbr0 nud failed
    ip neigh replace 192.168.122.135 lladdr 52:54:00:00:01:35 dev eno1 nud stale
    ip -d -j addr show > "$out/host-ip-addr.json"
    ip -j neigh show > "$out/host-ip-neigh.json"
    ip -4 -j route show default > "$out/host-ip-route4.json"
    ip -6 -j route show default > "$out/host-ip-route6.json"
    bridge -j fdb show br virbr0 > "$out/host-fdb-virbr0.json"
    # listeners: tcp 0.0.0.0:2222, tcp 127.0.0.1:8080, tcp6 [::]:5432, udp 0.0.0.0:2223
    python3 -c "
import socket, sys, time
ls = []
for fam, kind, addr in ((socket.AF_INET, socket.SOCK_STREAM, (\"0.0.0.0\", 2222)),
                        (socket.AF_INET, socket.SOCK_STREAM, (\"127.0.0.1\", 8080)),
                        (socket.AF_INET6, socket.SOCK_STREAM, (\"::\", 5432)),
                        (socket.AF_INET, socket.SOCK_DGRAM, (\"0.0.0.0\", 2223))):
    s = socket.socket(fam, kind); s.bind(addr)
    if kind == socket.SOCK_STREAM: s.listen()
    ls.append(s)
for name in (\"tcp\", \"tcp6\", \"udp\", \"udp6\"):
    open(sys.argv[1] + \"/host-proc-net-\" + name, \"w\").write(open(\"/proc/net/\" + name).read())
" "$out"
' capture-host "$here"
for f in "$here"/host-*.json; do
    python3 -m json.tool --indent 1 "$f" > "$f.tmp" && mv "$f.tmp" "$f"
done
echo "wrote $here/host-*"
