#!/bin/sh
# Regenerates the rulesets that tests/test_doctor_ruleset.py reads.
#
# Each fixture is captured from a real kernel: the shapes of other tools' rules are
# loaded, next to nftfwd's own table for scenarios/seed004-ssh-2222.yaml
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
#                     are repeated below; the tests check that doctor still prints them)
#
# It also captures what tests/test_doctor_host.py feeds the host probes: iproute2's JSON
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

# capture NAME SETUP_SCRIPT: runs SETUP_SCRIPT (sh) in a fresh namespace, then saves the ruleset
capture() {
    name=$1
    setup=$2
    unshare -Urn sh -eu -c '
        ip link add virbr0 type bridge
        . "$1"
        nft -f "$2"
        nft -j list ruleset > "$3.json"
        nft -a list ruleset > "$3.ruleset.txt" 2>/dev/null
    ' capture "$setup" "$own" "$work/$name"
    python3 -m json.tool --indent 1 "$work/$name.json" > "$here/$name.json"
    cp "$work/$name.ruleset.txt" "$here/$name.ruleset.txt"
    echo "wrote $here/$name.json"
}

# --- libvirt, iptables backend (libvirt < 9, or firewall_backend = "iptables") ---
cat > "$work/libvirt-iptables.sh" <<'SH'
cat > "$TMPDIR_RULES/v4" <<'RULES'
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:LIBVIRT_FWI - [0:0]
:LIBVIRT_FWO - [0:0]
:LIBVIRT_FWX - [0:0]
:LIBVIRT_INP - [0:0]
:LIBVIRT_OUT - [0:0]
-A INPUT -j LIBVIRT_INP
-A FORWARD -j LIBVIRT_FWX
-A FORWARD -j LIBVIRT_FWI
-A FORWARD -j LIBVIRT_FWO
-A OUTPUT -j LIBVIRT_OUT
-A LIBVIRT_FWI -d 192.168.122.0/24 -o virbr0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A LIBVIRT_FWI -o virbr0 -j REJECT --reject-with icmp-port-unreachable
-A LIBVIRT_FWO -s 192.168.122.0/24 -i virbr0 -j ACCEPT
-A LIBVIRT_FWO -i virbr0 -j REJECT --reject-with icmp-port-unreachable
-A LIBVIRT_FWX -i virbr0 -o virbr0 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 53 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p tcp -m tcp --dport 53 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p udp -m udp --dport 67 -j ACCEPT
-A LIBVIRT_INP -i virbr0 -p tcp -m tcp --dport 67 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p udp -m udp --dport 53 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p tcp -m tcp --dport 53 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p udp -m udp --dport 68 -j ACCEPT
-A LIBVIRT_OUT -o virbr0 -p tcp -m tcp --dport 68 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:LIBVIRT_PRT - [0:0]
-A POSTROUTING -j LIBVIRT_PRT
-A LIBVIRT_PRT -s 192.168.122.0/24 -d 224.0.0.0/24 -j RETURN
-A LIBVIRT_PRT -s 192.168.122.0/24 -d 255.255.255.255/32 -j RETURN
-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p tcp -j MASQUERADE --to-ports 1024-65535
-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -p udp -j MASQUERADE --to-ports 1024-65535
-A LIBVIRT_PRT -s 192.168.122.0/24 ! -d 192.168.122.0/24 -j MASQUERADE
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:LIBVIRT_PRT - [0:0]
-A POSTROUTING -j LIBVIRT_PRT
-A LIBVIRT_PRT -o virbr0 -p udp -m udp --dport 68 -j CHECKSUM --checksum-fill
COMMIT
RULES
iptables-nft-restore < "$TMPDIR_RULES/v4"
SH

# --- libvirt >= 9, nftables backend: its own table, iif/oif on the existing bridge ---
cat > "$work/libvirt-nftables.sh" <<'SH'
for fam in ip ip6; do
nft -f - <<RULES
table $fam libvirt_network {
    chain forward {
        type filter hook forward priority filter; policy accept;
        counter jump guest_cross
        counter jump guest_input
        counter jump guest_output
    }
    chain guest_output { }
    chain guest_input { }
    chain guest_cross { }
    chain guest_nat {
        type nat hook postrouting priority srcnat; policy accept;
    }
}
RULES
done
# libvirt inserts each rule at the top, so the last inserted comes first
nft insert rule ip libvirt_network guest_output iif virbr0 counter reject
nft insert rule ip libvirt_network guest_input oif virbr0 counter reject
nft insert rule ip libvirt_network guest_cross iif virbr0 oif virbr0 counter accept
nft insert rule ip libvirt_network guest_output ip saddr 192.168.122.0/24 iif virbr0 counter accept
nft insert rule ip libvirt_network guest_input oif virbr0 ip daddr 192.168.122.0/24 ct state related,established counter accept
nft insert rule ip libvirt_network guest_nat ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 counter masquerade
nft insert rule ip libvirt_network guest_nat meta l4proto udp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 counter masquerade to :1024-65535
nft insert rule ip libvirt_network guest_nat meta l4proto tcp ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 counter masquerade to :1024-65535
nft insert rule ip libvirt_network guest_nat ip saddr 192.168.122.0/24 ip daddr 255.255.255.255/32 counter return
nft insert rule ip libvirt_network guest_nat ip saddr 192.168.122.0/24 ip daddr 224.0.0.0/24 counter return
SH

# --- Docker 28 (iptables-nft): FORWARD policy DROP, one container publishing 8080 ---
cat > "$work/docker.sh" <<'SH'
cat > "$TMPDIR_RULES/v4" <<'RULES'
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-BRIDGE - [0:0]
:DOCKER-CT - [0:0]
:DOCKER-FORWARD - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-FORWARD
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER ! -i docker0 -o docker0 -j DROP
-A DOCKER-BRIDGE -o docker0 -j DOCKER
-A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER-FORWARD -j DOCKER-CT
-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1
-A DOCKER-FORWARD -j DOCKER-BRIDGE
-A DOCKER-FORWARD -i docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 172.17.0.2/32 ! -i docker0 -j DROP
COMMIT
RULES
iptables-nft-restore < "$TMPDIR_RULES/v4"
SH

# --- an admin's own table: forward policy drop, only replies accepted ---
cat > "$work/admin-policy-drop.sh" <<'SH'
nft -f - <<'RULES'
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iif "lo" accept
        tcp dport 22 accept
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
    }
    chain output {
        type filter hook output priority filter; policy accept;
    }
}
RULES
SH

# --- healthy: the admin's table drops only traffic that is not nftfwd's ---
cat > "$work/healthy.sh" <<'SH'
nft -f - <<'RULES'
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iif "lo" accept
        tcp dport 22 accept
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state invalid drop
        iifname "wg0" oifname "eno1" drop
        ip saddr 198.18.0.0/15 drop
        iifname { "eno1", "virbr0" } oifname { "eno1", "virbr0" } accept
        reject with icmpx admin-prohibited
    }
}
RULES
SH

# --- an Incus-like table that already DNATs tcp 2222 (and 2223 through a map) ---
cat > "$work/dnat-conflict.sh" <<'SH'
nft -f - <<'RULES'
table inet incus {
    chain prert.incus {
        type nat hook prerouting priority dstnat; policy accept;
        tcp dport 2222 dnat ip to 10.1.1.5:22
        dnat ip to tcp dport map { 2223 : 10.1.1.6 }
    }
    chain pstrt.incusbr0 {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 10.1.1.0/24 ip daddr != 10.1.1.0/24 masquerade
    }
}
RULES
SH

# --- the same, after the fix doctor prints for them ---
{ cat "$work/docker.sh"; cat <<'SH'; } > "$work/docker-fixed.sh"
iptables -I DOCKER-USER -i eno1 -o virbr0 -d 192.168.122.0/24 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
iptables -I DOCKER-USER -i eno1 -o virbr0 -m conntrack --ctstate DNAT -j ACCEPT
iptables -I DOCKER-USER -i virbr0 -o eno1 -m conntrack --ctstate DNAT -j ACCEPT
iptables -I DOCKER-USER -i virbr0 -o eno1 -s 192.168.122.0/24 -j ACCEPT
iptables -I DOCKER-USER -i virbr0 -o virbr0 -m conntrack --ctstate DNAT -j ACCEPT
SH
{ cat "$work/admin-policy-drop.sh"; cat <<'SH'; } > "$work/admin-policy-drop-fixed.sh"
nft 'insert rule inet filter forward iifname "eno1" oifname "virbr0" ct status dnat accept'
nft 'insert rule inet filter forward iifname "virbr0" oifname "eno1" ip saddr 192.168.122.0/24 accept'
nft 'insert rule inet filter forward iifname "virbr0" oifname "virbr0" ct status dnat accept'
SH

export TMPDIR_RULES="$work"
for name in libvirt-iptables libvirt-nftables docker admin-policy-drop healthy dnat-conflict \
    docker-fixed admin-policy-drop-fixed; do
    capture "$name" "$work/$name.sh"
done

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
