"""`nftfwd trace` against real packets, in the host namespace of the standard topology
(tests/harness) for seed004 (host port 2222 -> centos port 22, tests/seed004_host.py,
as doctor's kernel tests): the real command runs
there (`ip netns exec`), a client connects while it waits, and the trace names what the
kernel did. After every test (also after SIGINT, SIGTERM, a timeout and a killed trace)
the trace table is gone, no `nft monitor` is left in the namespace, and the rest of the
ruleset is byte-identical to before (stateless: the traffic moves counters).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Topology
from seed004_host import HOST, MODEL, load_setup, seed004, start
from wire import NFTFWD, load, model_path, read_model, state_dir

# An admin's own filter: one drop rule in inet filter forward, the policy accept.
ADMIN_DROP = """table inet filter {
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\ttcp dport 22 drop
\t}
}
"""
PROMPT_TIMEOUT = 15.0
# How long a client waits for its answer. The trace sees the answer, or the drop, by
# itself: a client whose connection is dropped or rejected only has to send its first
# packet.
ANSWER_WAIT = 2.0
DROPPED_WAIT = 0.3
# --timeout for a trace that must time out (nftfwd's smallest): nothing is sent to it.
NO_WAIT = "0.1"


def _argv(topo: Topology, *args: str) -> list[str]:
    env = ["env", f"NFTFWD_STATE_DIR={state_dir(topo)}", "NO_COLOR=1"]
    return ["ip", "netns", "exec", topo.ns["host"], *env, str(NFTFWD), "trace", *args]


class Tracing:
    """`nftfwd trace ARGS` running in the host namespace (ip netns exec and env exec it:
    the child's pid is nftfwd's)."""

    def __init__(self, topo: Topology, *args: str) -> None:
        self.process = subprocess.Popen(
            _argv(topo, *args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self.said = b""

    def prompt(self) -> str:
        """The first line on stderr: what to do now (the table and monitor are in place)."""
        assert self.process.stderr is not None
        fd = self.process.stderr.fileno()
        deadline = time.monotonic() + PROMPT_TIMEOUT
        while b"\n" not in self.said:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([fd], [], [], left)[0], "no prompt from trace"
            chunk = os.read(fd, 4096)
            assert chunk, f"trace ended early: {self.said!r}"
            self.said += chunk
        return self.said.decode().splitlines()[0]

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out.decode(), (self.said + err).decode()


def run_trace(topo: Topology, *args: str) -> subprocess.CompletedProcess[str]:
    return topo.run("host", _argv(topo, *args)[4:], check=False, timeout=60)


def stateless(topo: Topology) -> str:
    return topo.run("host", ["nft", "-s", "list", "ruleset"]).stdout


def monitors_left(topo: Topology) -> list[str]:
    """`nft monitor` processes in the host namespace (a monitor outliving its trace)."""
    pids = topo.run("host", ["ip", "netns", "pids", topo.ns["host"]], check=False).stdout.split()
    left = []
    for pid in pids:
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if os.path.basename(argv[0]) == b"nft" and b"monitor" in argv:
                left.append(pid)
    return left


@contextlib.contextmanager
def ruleset_kept(topo: Topology) -> Iterator[None]:
    before = stateless(topo)
    yield
    after = stateless(topo)
    assert "nftfwd_trace" not in after
    assert after == before
    assert monitors_left(topo) == []


def handle_of(topo: Topology, family: str, table: str, chain: str, rule: str) -> int:
    """The handle of the first rule that `rule` (a regular expression) finds."""
    listing = topo.run("host", ["nft", "-a", "list", "chain", family, table, chain]).stdout
    match = re.search(rf"(?:{rule})[^\n]* # handle (?P<handle>\d+)", listing)
    assert match, listing
    return int(match["handle"])


def traced_connection(
    topo: Topology, *args: str, source: str | None = None, wait: float = ANSWER_WAIT
) -> tuple[int, str]:
    """Trace, connect from client0 once the trace waits (the client waits `wait` for its
    answer), return (exit code, stdout)."""
    tracing = Tracing(topo, str(MODEL), "--host", HOST, "2222", "--timeout", "20", *args)
    assert tracing.prompt() == (
        "connect to any IPv4 address of this host port 2222 (tcp) from outside now; "
        "waiting up to 20 s"
    )
    topo.request("client0", "tcp", topo.host_address(4), 2222, source=source, timeout=wait)
    code, out, err = tracing.finish()
    assert code in (0, 1), err
    return code, out


@pytest.mark.kernel
def test_healthy_forward_ends_in_the_guests_reply() -> None:
    with seed004() as topo:
        start(topo)
        with ruleset_kept(topo):
            code, out = traced_connection(topo)
        assert code == 0, out
        lines = out.splitlines()
        assert lines[0] == "trace of tcp 2222 -> centos 192.168.122.133 port 22, host localhost"
        assert lines[1].startswith("packet 203.0.113.100:")
        assert lines[1].endswith(" -> 203.0.113.1:2222 (tcp), in on eno1, tcp flags syn")
        dnat = handle_of(topo, "inet", "nftfwd", "prerouting", "@dnat_port_any4")
        assert re.match(r"  prerouting +inet nftfwd prerouting, rule .* dnat ip to .*"
                        rf" \(handle {dnat}\): accept$", lines[2])  # fmt: skip
        assert re.match(r"  forward +inet nftfwd forward, rule ct status dnat accept", lines[3])
        assert any(line.startswith("reply 192.168.122.133:22 -> 203.0.113.100:") for line in lines)
        assert f"DNAT: to 192.168.122.133:22 (inet nftfwd prerouting, handle {dnat})" in lines
        assert "route: leaves by virbr0" in lines
        assert lines[-1] == (
            "delivered: DNATed to centos 192.168.122.133 port 22, and the guest answered."
        )


@pytest.mark.kernel
def test_libvirt_reject_in_nat_mode_is_named() -> None:
    """libvirt 9's own rules in NAT mode (iptables-nft, tests/data/doctor/setups)."""
    with seed004() as topo:
        start(topo)
        load_setup(topo, "libvirt-iptables.rules")
        with ruleset_kept(topo):
            code, out = traced_connection(topo, wait=DROPPED_WAIT)
        assert code == 1, out
        handle = handle_of(topo, "ip", "filter", "LIBVIRT_FWI", 'oifname "virbr0" counter')
        assert (
            'stopped: rejected by ip filter LIBVIRT_FWI, rule oifname "virbr0" counter reject '
            f"(handle {handle}).\n" in out
        )
        assert "  forward     ip filter FORWARD, rule counter jump LIBVIRT_FWI" in out
        doctor = "doctor: foreign-chain-rejects: table ip filter, chain LIBVIRT_FWI, rule 2"
        assert f"{doctor} (handle {handle})" in out


@pytest.mark.kernel
def test_docker_forward_policy_drop_is_named() -> None:
    with seed004() as topo:
        start(topo)
        load_setup(topo, "docker.rules")
        with ruleset_kept(topo):
            code, out = traced_connection(topo, wait=DROPPED_WAIT)
        assert code == 1, out
        assert "stopped: dropped by ip filter FORWARD, policy drop.\n" in out
        assert "ip filter DOCKER-FORWARD, rule counter jump DOCKER-BRIDGE" in out
        assert "doctor: foreign-policy-drop: table ip filter, chain FORWARD, policy drop" in out


@pytest.mark.kernel
def test_admin_drop_rule_is_named_with_its_handle() -> None:
    with seed004() as topo:
        start(topo)
        topo.load_ruleset(ADMIN_DROP)
        handle = handle_of(topo, "inet", "filter", "forward", "tcp dport 22 drop")
        with ruleset_kept(topo):
            code, out = traced_connection(topo, wait=DROPPED_WAIT)
        assert code == 1, out
        assert (
            f"stopped: dropped by inet filter forward, rule tcp dport 22 drop (handle {handle}).\n"
            in out
        )
        doctor = "doctor: foreign-chain-drops: table inet filter, chain forward, rule 2"
        assert f"{doctor} (handle {handle})" in out


@pytest.mark.kernel
def test_client_outside_sources_is_left_without_dnat_by_nftfwds_own_rules() -> None:
    path = model_path("sources")
    other = "192.0.2.77"
    with Topology(read_model(path), "e2e", extra_client_addresses={0: [other]}) as topo:
        load(topo, path, "e2e")
        topo.serve("web", [22], ("tcp",))
        with ruleset_kept(topo):
            tracing = Tracing(topo, str(path), "2222", "--timeout", "20")
            tracing.prompt()
            topo.request(
                "client0", "tcp", topo.host_address(4), 2222, source=other, timeout=ANSWER_WAIT
            )
            code, out, err = tracing.finish()
        assert code == 1, out + err
        assert out.splitlines()[1].startswith(f"packet {other}:")
        assert (
            "stopped: nftfwd's own rules leave it without DNAT (inet nftfwd allow4_1, rule ip "
            "saddr != 198.51.100.0/24 accept (handle " in out
        )
        assert "so the forward is closed to this client" in out
        assert "DNAT:" not in out


class Watcher:
    """`nft monitor` in the host namespace, listening once it reported a change of ours."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", topo.ns["host"], "nft", "monitor"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.seen = b""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + 10
        for n in range(1000):
            topo.load_ruleset(f"table ip watcher_ready{n} {{}}\ndelete table ip watcher_ready{n}\n")
            if select.select([fd], [], [], 0.05)[0]:
                break
            assert time.monotonic() < deadline, "nft monitor did not start"

    def stop(self) -> str:
        self.process.terminate()
        out, _ = self.process.communicate(timeout=5)
        return out.decode()


@pytest.mark.kernel
def test_a_port_that_is_no_forward_is_refused_before_anything_is_added() -> None:
    with seed004() as topo:
        start(topo)
        with ruleset_kept(topo):
            watcher = Watcher(topo)
            done = run_trace(topo, str(MODEL), "2999", "--timeout", "5")
            seen = watcher.stop()
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(
            "error: tcp port 2999 is not a forward of host localhost; its forwards are tcp 2222."
        )
        assert "nftfwd_trace" not in seen, seen


@pytest.mark.kernel
@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_trace_and_removes_its_table(number: signal.Signals) -> None:
    with seed004() as topo:
        start(topo)
        with ruleset_kept(topo):
            tracing = Tracing(topo, str(MODEL), "2222", "--timeout", "30")
            tracing.prompt()
            assert "nftfwd_trace" in stateless(topo)
            tracing.process.send_signal(number)
            code, _, err = tracing.finish()
        assert code == 2, err
        assert f"error: interrupted by {number.name}; the trace table is removed." in err


@pytest.mark.kernel
def test_a_timeout_without_a_connection_exits_4() -> None:
    with seed004() as topo:
        start(topo)
        with ruleset_kept(topo):
            done = run_trace(topo, str(MODEL), "2222", "--timeout", NO_WAIT, "--format", "json")
        assert done.returncode == 4, done.stderr
        document = json.loads(done.stdout)
        assert (document["format"], document["result"], document["exit_code"]) == (1, "nothing", 4)


@pytest.mark.kernel
def test_a_second_trace_is_refused_and_a_killed_ones_table_is_removed_by_the_next() -> None:
    with seed004() as topo:
        start(topo)
        with ruleset_kept(topo):
            first = Tracing(topo, str(MODEL), "2222", "--timeout", "30")
            first.prompt()
            second = run_trace(topo, str(MODEL), "2222", "--timeout", NO_WAIT)
            assert second.returncode == 2, second.stderr
            assert (
                f"error: another trace is running (pid {first.process.pid}): one trace at a "
                "time" in second.stderr
            )
            first.process.kill()  # SIGKILL: nothing of it cleans up; its monitor dies with it
            first.finish()
            assert "table inet nftfwd_trace" in stateless(topo)
            third = run_trace(topo, str(MODEL), "2222", "--timeout", NO_WAIT)
            assert third.returncode == 4, third.stderr
            assert "removed the trace table of an earlier trace that did not end." in third.stderr


@pytest.mark.kernel
def test_probe_connects_from_the_host_itself_json() -> None:
    with seed004() as topo:
        start(topo)
        with ruleset_kept(topo):
            done = run_trace(topo, str(MODEL), "2222", "--probe", "--timeout", "10",
                             "--format", "json")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stderr == (
            "connecting to 203.0.113.1 port 2222 from this host; waiting up to 10 s\n"
        )
        document = json.loads(done.stdout)
        assert (document["format"], document["result"], document["route"]) == (
            1, "delivered", "virbr0"
        )  # fmt: skip
        assert document["dnat"]["rule"]["chain"] == "output"
        assert document["paths"][0]["hook"] == "output"
        assert document["paths"][1]["packet"]["saddr"] == "192.168.122.133"


@pytest.mark.kernel
def test_an_iptables_nft_xt_match_is_shown_as_nft_prints_it() -> None:
    """A rule iptables-nft cannot say in nft's own terms (`-m recent`) is an `xt` match."""
    with seed004() as topo:
        start(topo)
        topo.run("host", ["iptables-nft", "-A", "FORWARD", "-p", "tcp", "-m", "recent",
                          "--name", "trace", "--set", "-j", "DROP"])  # fmt: skip
        # nft 1.0.6 prints `meta l4proto tcp xt match recent`, 1.1.3 `ip protocol tcp xt
        # match "recent"`: the rule as this nft prints it
        rule = r'(meta l4proto|ip protocol) tcp xt match "?recent"? counter'
        handle = handle_of(topo, "ip", "filter", "FORWARD", rule)
        with ruleset_kept(topo):
            code, out = traced_connection(topo, wait=DROPPED_WAIT)
        assert code == 1, out
        stopped = rf"stopped: dropped by ip filter FORWARD, rule {rule} drop \(handle {handle}\)\."
        assert re.search(stopped, out), out


@pytest.mark.kernel
def test_a_table_with_flags_owner_is_traced() -> None:
    """firewalld >= 2.0 owns its table (`flags owner`): only its process may change it, and
    nft 1.0.6 lists it badly; its reject is named all the same."""
    with seed004() as topo:
        start(topo)
        owner = subprocess.Popen(
            ["ip", "netns", "exec", topo.ns["host"], "nft", "-i"], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert owner.stdin is not None
        try:
            owner.stdin.write(
                "add table inet firewalld { flags owner; }\n"
                "add chain inet firewalld filter_FORWARD { type filter hook forward priority "
                "filter + 10; policy accept; }\n"
                "add rule inet firewalld filter_FORWARD tcp dport 22 reject\n"
            )
            owner.stdin.flush()
            deadline = time.monotonic() + 5
            while "tcp dport 22 reject" not in stateless(topo):
                assert time.monotonic() < deadline, "the owner's table did not appear"
                time.sleep(0.05)
            handle = handle_of(topo, "inet", "firewalld", "filter_FORWARD", "tcp dport 22 reject")
            with ruleset_kept(topo):
                code, out = traced_connection(topo, wait=DROPPED_WAIT)
            assert code == 1, out
            assert (
                "stopped: rejected by inet firewalld filter_FORWARD, rule tcp dport 22 reject "
                f"(handle {handle}).\n" in out
            ), out
        finally:
            owner.stdin.close()
            owner.wait(5)


@pytest.mark.kernel
def test_hairpin_false_leaves_a_guests_connection_without_dnat() -> None:
    path = model_path("hairpin-off")
    with Topology(read_model(path), "e2e") as topo:
        load(topo, path, "e2e")
        topo.serve("app", [22], ("tcp",))
        with ruleset_kept(topo):
            tracing = Tracing(topo, str(path), "2222", "--timeout", "20")
            tracing.prompt()
            topo.request("guest:web", "tcp", topo.host_address(4), 2222, timeout=ANSWER_WAIT)
            code, out, err = tracing.finish()
        assert code == 1, out + err
        assert out.splitlines()[1].startswith("packet 192.168.50.10:")
        assert (
            "stopped: nftfwd's own rules leave it without DNAT (inet nftfwd prerouting, policy "
            "accept), so the forward is closed to this client" in out
        ), out


# --- UDP and IPv6: tests/data/e2e/ipv6.yaml, host port 8080 -> web port 80, tcp and udp,
# dual stack (web 192.168.50.10 and fd00:50::10 on br0); an echo server in the guest.

DUAL = model_path("ipv6")
# An admin's filter that stops one kind of connection to web; the rest passes.
ADMIN_REJECT = """table inet filter {{
\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\t{rule}
\t}}
}}
"""


@contextlib.contextmanager
def dual_stack(clients: list[str] | None = None) -> Iterator[Topology]:
    extra = {0: clients} if clients else None
    with Topology(read_model(DUAL), "e2e", extra_client_addresses=extra) as topo:
        load(topo, DUAL, "e2e")
        topo.serve("web", [80])
        yield topo


def traced_dual(
    topo: Topology,
    *args: str,
    proto: str = "tcp",
    family: int = 4,
    prompt: str,
    wait: float = ANSWER_WAIT,
) -> tuple[int, str]:
    """Trace port 8080 (ARGS), connect from client0 to the host's address of `family`
    once the trace waits (PROMPT: what it said to do; the client waits `wait` for its
    answer), return (exit code, stdout)."""
    tracing = Tracing(topo, str(DUAL), "8080", "--timeout", "20", *args)
    assert tracing.prompt() == f"connect to {prompt} now; waiting up to 20 s"
    reply = topo.request("client0", proto, topo.host_address(family), 8080, timeout=wait)
    code, out, err = tracing.finish()
    assert code in (0, 1), err
    assert reply.ok == (code == 0), reply
    return code, out


@pytest.mark.kernel
def test_udp_forward_ends_in_the_guests_answer() -> None:
    with dual_stack() as topo:
        with ruleset_kept(topo):
            code, out = traced_dual(
                topo, "--proto", "udp", "--family", "4", proto="udp",
                prompt="any IPv4 address of this host port 8080 (udp) from outside",
            )  # fmt: skip
        assert code == 0, out
        lines = out.splitlines()
        assert lines[0] == "trace of udp 8080 -> web 192.168.50.10 port 80, host e2e"
        assert re.fullmatch(r"packet 203\.0\.113\.100:\d+ -> 203\.0\.113\.1:8080 \(udp\), "
                            r"in on wan0", lines[1]), out  # fmt: skip
        dnat = handle_of(topo, "inet", "nftfwd", "prerouting", "@dnat_port_any4")
        assert re.match(r"  prerouting +inet nftfwd prerouting, rule .* dnat ip to .*"
                        rf" \(handle {dnat}\): accept$", lines[2]), out  # fmt: skip
        assert any(re.fullmatch(r"reply 192\.168\.50\.10:80 -> 203\.0\.113\.100:\d+ \(udp\), "
                                r"in on br0", line) for line in lines), out  # fmt: skip
        assert f"DNAT: to 192.168.50.10:80 (inet nftfwd prerouting, handle {dnat})" in lines
        assert "route: leaves by br0" in lines
        assert (
            lines[-1] == "delivered: DNATed to web 192.168.50.10 port 80, and the guest answered."
        )


@pytest.mark.kernel
def test_udp_forward_rejected_by_an_admins_rule_is_named() -> None:
    with dual_stack() as topo:
        topo.load_ruleset(ADMIN_REJECT.format(rule="udp dport 80 reject"))
        handle = handle_of(topo, "inet", "filter", "forward", "udp dport 80 reject")
        with ruleset_kept(topo):
            code, out = traced_dual(
                topo, "--proto", "udp", proto="udp", wait=DROPPED_WAIT,
                prompt="any IPv4 address of this host port 8080 (udp) from outside",
            )  # fmt: skip
        assert code == 1, out
        stopped = (
            f"stopped: rejected by inet filter forward, rule udp dport 80 reject (handle {handle})"
        )
        assert f"{stopped}.\n" in out, out
        # the host's ICMP error, by nft's name of its code whichever nft printed it
        assert re.search(
            r"^reply 203\.0\.113\.1 -> 203\.0\.113\.100 \(icmp\), sent by the host, out on wan0, "
            r"icmp destination-unreachable port-unreachable$", out, re.MULTILINE,
        ), out  # fmt: skip
        doctor = "doctor: foreign-chain-rejects: table inet filter, chain forward, rule 2"
        assert f"{doctor} (handle {handle})" in out


@pytest.mark.kernel
def test_ipv6_forward_ends_in_the_guests_reply() -> None:
    with dual_stack() as topo:
        with ruleset_kept(topo):
            code, out = traced_dual(
                topo, "--family", "6", family=6,
                prompt="any IPv6 address of this host port 8080 (tcp) from outside",
            )  # fmt: skip
        assert code == 0, out
        lines = out.splitlines()
        assert lines[0] == "trace of tcp 8080 -> web fd00:50::10 port 80, host e2e"
        assert re.fullmatch(r"packet \[2001:db8:1::100\]:\d+ -> \[2001:db8:1::1\]:8080 \(tcp\), "
                            r"in on wan0, tcp flags syn", lines[1]), out  # fmt: skip
        dnat = handle_of(topo, "inet", "nftfwd", "prerouting", "@dnat_port_any6")
        assert re.match(r"  prerouting +inet nftfwd prerouting, rule .* dnat ip6 to .*"
                        rf" \(handle {dnat}\): accept$", lines[2]), out  # fmt: skip
        assert any(line.startswith("reply [fd00:50::10]:80 -> [2001:db8:1::100]:")
                   for line in lines), out  # fmt: skip
        assert f"DNAT: to [fd00:50::10]:80 (inet nftfwd prerouting, handle {dnat})" in lines
        assert "route: leaves by br0" in lines
        assert lines[-1] == "delivered: DNATed to web fd00:50::10 port 80, and the guest answered."


@pytest.mark.kernel
def test_ipv6_forward_rejected_by_an_admins_rule_is_named() -> None:
    with dual_stack() as topo:
        topo.load_ruleset(ADMIN_REJECT.format(rule="ip6 daddr fd00:50::10 tcp dport 80 reject"))
        handle = handle_of(topo, "inet", "filter", "forward", "ip6 daddr fd00:50::10 tcp")
        with ruleset_kept(topo):
            code, out = traced_dual(
                topo, "--family", "6", family=6, wait=DROPPED_WAIT,
                prompt="any IPv6 address of this host port 8080 (tcp) from outside",
            )  # fmt: skip
        assert code == 1, out
        # nft lists the rule with the reject's default spelled out
        stopped = (
            r"stopped: rejected by inet filter forward, rule ip6 daddr fd00:50::10 tcp "
            rf"dport 80 reject with icmpv6 port-unreachable \(handle {handle}\)\.\n"
        )
        assert re.search(stopped, out), out
        assert re.search(
            r"^reply 2001:db8:1::1 -> 2001:db8:1::100 \(ipv6-icmp\), sent by the host, out on "
            r"wan0, ipv6-icmp destination-unreachable port-unreachable$", out, re.MULTILINE,
        ), out  # fmt: skip
        doctor = "doctor: foreign-chain-rejects: table inet filter, chain forward, rule 2"
        assert f"{doctor} (handle {handle})" in out


@pytest.mark.kernel
def test_from_an_ipv6_client_traces_only_its_connection() -> None:
    chosen = "2001:db8:100::10"
    with dual_stack([chosen]) as topo:
        with ruleset_kept(topo):
            tracing = Tracing(topo, str(DUAL), "8080", "--from", chosen, "--timeout", "20")
            assert tracing.prompt() == (
                f"connect to any IPv6 address of this host port 8080 (tcp) from {chosen} now; "
                "waiting up to 20 s"
            )
            host6 = topo.host_address(6)
            other = topo.request("client0", "tcp", host6, 8080, timeout=ANSWER_WAIT)  # not traced
            assert other.ok, other
            mine = topo.request("client0", "tcp", host6, 8080, source=chosen, timeout=ANSWER_WAIT)
            assert mine.ok, mine
            code, out, err = tracing.finish()
        assert code == 0, out + err
        lines = out.splitlines()
        assert lines[0] == "trace of tcp 8080 -> web fd00:50::10 port 80, host e2e"
        assert lines[1].startswith(f"packet [{chosen}]:"), out
        assert any(line.startswith(f"reply [fd00:50::10]:80 -> [{chosen}]:") for line in lines)
        assert "2001:db8:1::100" not in out
        assert lines[-1] == "delivered: DNATed to web fd00:50::10 port 80, and the guest answered."
