#!/bin/sh
# Captures what the fixtures beside this script hold: `nft -j list ruleset` (and the
# text listing with handles) of a network namespace holding nftfwd's table of
# golden/fleet-dualstack.edge1, a table with interval and concatenated sets and a
# verdict map, and iptables-nft's tables with xt matches.
#   sudo tests/data/nftjson/capture.sh OUTDIR   (run from the checkout; in a Debian root
#   for another nft: .ci/debian-root enter ROOT sh .../capture.sh OUTDIR)
set -eu
out=$1
ns=nftjson-capture-$$
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
in_ns() { ip netns exec "$ns" "$@"; }
in_ns nft -f golden/fleet-dualstack.edge1.nft
in_ns nft -f - <<'RULES'
table inet extra {
  set blocked {
    type ipv4_addr
    flags interval
    elements = { 10.0.0.0/8, 192.168.1.1-192.168.1.9, 172.16.0.1 comment "one host" }
  }
  set pairs {
    type ipv4_addr . inet_service
    flags interval
    elements = { 10.1.0.0/16 . 80-90, 10.2.0.1 . 443 }
  }
  map svc {
    type inet_proto . inet_service : verdict
    elements = { tcp . 22 : accept, udp . 53 : drop }
  }
  counter hits {
  }
  chain input {
    type filter hook input priority filter; policy accept;
    ip saddr @blocked counter drop
    meta l4proto . th dport vmap @svc
  }
  chain helper {
    ip daddr . tcp dport @pairs accept comment "a rule comment"
  }
}
RULES
in_ns iptables-nft -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
in_ns iptables-nft -A FORWARD -p tcp -m multiport --dports 80,443 -j ACCEPT
in_ns iptables-nft -P FORWARD DROP
in_ns iptables-nft -t nat -A POSTROUTING -s 10.9.0.0/24 -j MASQUERADE
version=$(nft --version | awk '{print $2}' | tr -d v)
in_ns nft -j list ruleset >"$out/kernel-nft-$version.json"
in_ns nft -a list ruleset >"$out/kernel-nft-$version.nft" 2>/dev/null
