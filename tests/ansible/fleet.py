"""Three hypervisors for the Ansible tests, each one a topology of network namespaces
(tests/harness: host, client, guest), reached by Ansible through a local connection
whose Python interpreter is a wrapper that runs it in the host's namespace (`ip netns
exec`), with the host's own NFTFWD_STATE_DIR and this checkout's nftfwd on PATH; with
`fleet(..., own_sysctl_d=True)`, also its own /etc/sysctl.d (see `own_sysctl_d`)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Topology
from kernel_ns import Namespace

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
COLLECTION = REPO / "ansible"
PLAYBOOKS = HERE / "playbooks"
BIN = Path(sys.executable).parent  # this checkout's nftfwd: the controller's and the hosts'
IN_CI = os.environ.get("CI", "").lower() == "true"
HOSTS = ("kvm1", "kvm2", "kvm3")
NETNS_ETC = Path("/etc/netns")  # ip-netns(8): `ip netns exec NS` binds /etc/netns/NS/* over /etc


def fleet_model() -> dict[str, Any]:
    """One model for three hosts, each with a guest of its own and its own forwards."""
    hosts = {}
    for number, name in enumerate(HOSTS, start=1):
        forwards = [
            {"port": 8080 + number, "to": 80},
            {"port": 2200 + number, "to": 22},
        ]
        hosts[name] = {
            "uplinks": ["up0"],
            "bridges": {
                "br0": {
                    "subnet": f"10.0.{number}.0/24",
                    "guests": {
                        f"web{number}": {"address": f"10.0.{number}.10", "forwards": forwards}
                    },
                }
            },
        }
    return {"version": 1, "hosts": hosts}


def write_model(path: Path, model: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    return path


def need_ansible() -> None:
    """ansible-core is in the test extras (and Debian's ansible-core in .ci/debian13):
    missing in CI is a failure, elsewhere a skip."""
    if importlib.util.find_spec("ansible") is None:
        if IN_CI:
            pytest.fail("CI=true but ansible-core is not installed", pytrace=False)
        pytest.skip("needs ansible-core (pip install -e '.[test]')")


@dataclass
class Run:
    """One ansible-playbook run: its exit code, its output, and what Ansible reported."""

    code: int
    stdout: str
    stderr: str
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def recap(self) -> dict[str, dict[str, int]]:
        recaps = [r["recap"] for r in self.records if r["outcome"] == "recap"]
        assert recaps, self.output
        return dict(recaps[-1])

    def changed_hosts(self) -> set[str]:
        return {host for host, counts in self.recap.items() if counts["changed"]}

    def failed_hosts(self) -> set[str]:
        return {host for host, counts in self.recap.items() if counts["failures"]}

    def results(self, task: str) -> dict[str, dict[str, Any]]:
        """The results of the task named `task`, by host (with "outcome": ok, failed...)."""
        return {
            r["host"]: {**r["result"], "outcome": r["outcome"]}
            for r in self.records
            if r.get("task") == task
        }


class Fleet:
    """The three hosts, the inventory and the environment that ansible-playbook runs in."""

    def __init__(self, tmp_path: Path, model: dict[str, Any]) -> None:
        self.tmp = tmp_path
        self.model = model
        self.topologies: dict[str, Topology] = {}
        self.sysctl_d: dict[str, Path] = {}  # each host's own /etc/sysctl.d, when it has one
        self.runs = 0

    def start(self, stack: contextlib.ExitStack) -> None:
        for name in HOSTS:
            self.topologies[name] = stack.enter_context(Topology(self.model, name))
        collections = self.tmp / "collections" / "ansible_collections" / "nftfwd"
        collections.mkdir(parents=True)
        (collections / "fleet").symlink_to(COLLECTION)
        wrappers = self.tmp / "interpreters"
        wrappers.mkdir()
        inventory: dict[str, Any] = {"fleet": {"hosts": {}}, "clients": {"hosts": {}}}
        for number, (name, topology) in enumerate(self.topologies.items(), start=1):
            host_vars = {
                "ansible_connection": "local",
                "ansible_python_interpreter": str(
                    self._wrapper(wrappers / name, topology.ns["host"], self.state(name))
                ),
                # The example playbook's health check: forward 808N from this host's client.
                "nftfwd_health_check": {"host": topology.host_address(4), "port": 8080 + number},
                "nftfwd_health_check_from": f"client{number}",
            }
            inventory["fleet"]["hosts"][name] = host_vars
            inventory["clients"]["hosts"][f"client{number}"] = {
                "ansible_connection": "local",
                "ansible_python_interpreter": str(
                    self._wrapper(
                        wrappers / f"client{number}",
                        topology.ns["client0"],
                        self.tmp / f"client{number}-state",
                    )
                ),
            }
        self.inventory = self.tmp / "inventory.yml"
        self.inventory.write_text(yaml.safe_dump(inventory, sort_keys=True))

    def stop_guards(self) -> None:
        """The rollback guards `load --confirm` left behind, stopped by pid."""
        for name, topology in self.topologies.items():
            for pid in Namespace(topology.ns["host"], self.state(name)).guards():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def load(self, model: Path) -> dict[str, str]:
        """Each host's part of `model` loaded by nftfwd itself (a test's starting point,
        seconds faster than a play); the rulesets then."""
        for name, topology in self.topologies.items():
            done = Namespace(topology.ns["host"], self.state(name)).nftfwd(
                "load", str(model), "--host", name, "--atomic", "--yes"
            )
            assert done.returncode == 0, done.stderr
        return self.rulesets()

    def state(self, name: str) -> Path:
        return self.tmp / f"{name}-state"

    def own_sysctl_d(self, stack: contextlib.ExitStack) -> None:
        """Give each host its own /etc/sysctl.d, where `nftfwd load --enable-forwarding`
        writes its file: `ip netns exec NS` (the interpreter wrapper, and `load` here)
        bind-mounts every entry of /etc/netns/NS/ over /etc/ in the mount namespace it
        makes, so /etc/netns/NS/sysctl.d stands for /etc/sysctl.d there, and the machine's
        stays as it is. NS is the host's namespace, unique to this test; the directories are
        removed when the test ends, also when it fails."""
        if not NETNS_ETC.exists():
            stack.callback(_remove_if_empty, NETNS_ETC)  # last: after every host's directory
        for name, topology in self.topologies.items():
            etc = NETNS_ETC / topology.ns["host"]
            etc.mkdir(parents=True)  # never someone else's: the name is this test's alone
            stack.callback(shutil.rmtree, etc)
            self.sysctl_d[name] = etc / "sysctl.d"
            self.sysctl_d[name].mkdir()
        for name, topology in self.topologies.items():
            # `ip netns exec` only warns when a bind fails: make sure this one took.
            seen = topology.run("host", ["stat", "-c", "%d %i", "/etc/sysctl.d"]).stdout.split()
            own = self.sysctl_d[name].stat()
            assert seen == [str(own.st_dev), str(own.st_ino)], f"{name}: /etc/sysctl.d not bound"

    def sysctl(self, name: str, key: str, value: str | None = None) -> str:
        """A sysctl in the host's namespace (set first when `value` is given)."""
        if value is not None:
            self.topologies[name].run("host", ["sysctl", "-qw", f"{key}={value}"])
        return self.topologies[name].run("host", ["sysctl", "-n", key]).stdout.strip()

    @staticmethod
    def _wrapper(path: Path, namespace: str, state: Path) -> Path:
        # /usr/bin/python3, not this venv's: the module must not need nftfwd's Python.
        path.write_text(
            "#!/bin/sh\n"
            f"exec ip netns exec {namespace} env NFTFWD_STATE_DIR={state} "
            f'PATH={BIN}:"$PATH" /usr/bin/python3 "$@"\n'
        )
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return path

    def nft(self, name: str, *args: str) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", self.topologies[name].ns["host"], "nft", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def ruleset(self, name: str) -> str:
        return self.nft(name, "list", "ruleset")

    def rulesets(self) -> dict[str, str]:
        return {name: self.ruleset(name) for name in HOSTS}

    def env(self, record: Path) -> dict[str, str]:
        home = self.tmp / "ansible-home"
        return {
            **os.environ,
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "ANSIBLE_COLLECTIONS_PATH": str(self.tmp / "collections"),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            "ANSIBLE_CALLBACK_PLUGINS": str(HERE / "callback"),
            "ANSIBLE_CALLBACKS_ENABLED": "fleet_record",
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_DEPRECATION_WARNINGS": "false",
            "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
            "FLEET_RECORD": str(record),
            "NO_COLOR": "1",
        }

    def play(self, playbook: Path, *args: str, **extra_vars: Any) -> Run:
        """ansible-playbook PLAYBOOK ARGS -e EXTRA_VARS against the fleet."""
        self.runs += 1
        record = self.tmp / f"run{self.runs}.jsonl"
        argv = [sys.executable, "-m", "ansible", "playbook", "-i", str(self.inventory)]
        argv += [str(playbook), *args, "-e", json.dumps(extra_vars)]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=self.env(record),
            stdin=subprocess.DEVNULL,
            timeout=300,
            cwd=self.tmp,
        )
        records = []
        if record.exists():
            records = [json.loads(line) for line in record.read_text().splitlines()]
        return Run(done.returncode, done.stdout, done.stderr, records)


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):  # gone, or another test's namespace has it now
        directory.rmdir()


@contextlib.contextmanager
def fleet(
    tmp_path: Path, model: dict[str, Any] | None = None, *, own_sysctl_d: bool = False
) -> Iterator[Fleet]:
    need_ansible()
    made = Fleet(tmp_path, model or fleet_model())
    with contextlib.ExitStack() as stack:
        stack.callback(made.stop_guards)
        made.start(stack)
        if own_sysctl_d:
            made.own_sysctl_d(stack)
        yield made
