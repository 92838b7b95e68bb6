"""README's transcripts are real output: each is compared with what its commands print.

A transcript is a fenced block of README.md with a line `$ ...` (its first line must be
one, and a command other than `nftfwd ...` fails the check): each `$ ` line is a command,
the lines after it its output (stdout and stderr as a terminal shows them, interleaved),
and an optional last line `[exit N]` its exit code (none shown: it must exit 0). Every
transcript is either checked here, by running its commands in a scene that has the files
and the host it talks about (SCENES), or listed in NOT_PRODUCIBLE with the reason; a
transcript that is neither fails the test, and so does a listed one README no longer
shows.

The comparison is exact, line for line, after this normalisation of the real output only:
- the scene's temporary paths read as README writes them: the state directory as
  /var/lib/nftfwd, a throwaway working directory as nothing (README runs in the current
  directory);
- `(pid N)` reads `(pid 4242)` and a duration `(N.N s)` reads `(0.0 s)`.
In README's expected output a line that is exactly `...` stands for any run of lines
(none included); nothing else is a wildcard. An expected output without `...` that
parses as JSON is compared as parsed JSON.

The scenes (SCENES): `build` and `diff --from` run in a directory holding bad.yaml
(tests/data/readme/: three mistakes), main.yaml (examples/homelab.yaml) and nftfwd.yaml
(tests/data/readme/: the same with the database moved to 5433 and a UDP forward added).
The host commands run in the host namespace of the standard topology (tests/harness), in
a mount namespace of their own whose /etc is a Debian host's (DEBIAN_ETC: the model in
/etc/nftfwd, a known nftables.conf, libvirt's XML naming virbr0's network `default`, no
systemd unit enabled or installed), so that nothing of the machine running the tests
shows: `diff`, `load` and `confirm` on the homelab host with main.yaml loaded, nftfwd.yaml
in /etc/nftfwd and three connections open through the database's forward; `doctor` on
seed004's host (tests/seed004_host.py) with libvirt's real iptables-nft rules of
its NAT mode and Debian's stock nftables.conf, and `doctor --format json` on the same
host once doctor's fix put the network in open mode (libvirt's rules gone); `trace` on
the same two hosts, client0 connecting while it waits (its port, which the kernel picks,
read as 40000).

`pytest tests/packaging/test_readme.py --update-readme` rewrites the checked transcripts' outputs
from the real ones (outputs with `...` are left for a human to edit); review with
`git diff README.md`.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import EXAMPLES, REPO, SCENARIOS, TEST_DATA
from harness import Topology
from kernel_ns import NFTFWD, Namespace
from seed004_host import NO_FLUSH, load_setup, start
from wire import load, read_model, state_dir

README = REPO / "README.md"
DATA = TEST_DATA / "readme"
HOMELAB = EXAMPLES / "homelab.yaml"
SEED004 = SCENARIOS / "seed004-ssh-2222.yaml"
STOCK_NFTABLES_CONF = TEST_DATA / "doctor" / "debian-nftables.conf"
LIBVIRT_DEFAULT = TEST_DATA / "libvirt" / "default.xml"
README_STATE_DIR = "/var/lib/nftfwd"

# --- README's transcripts -----------------------------------------------------------------

FENCE = re.compile(r"^(`{3,})")
EXIT = re.compile(r"^\[exit (\d+)\]$")
ELIDED = "..."


@dataclass(frozen=True)
class Step:
    command: str  # as README shows it after `$ `
    output: tuple[str, ...]  # the lines README shows, [exit N] excluded
    exit_code: int
    shows_exit: bool  # README has an [exit N] line

    def text(self) -> list[str]:
        lines = [f"$ {self.command}", *self.output]
        return [*lines, f"[exit {self.exit_code}]"] if self.shows_exit else lines


@dataclass(frozen=True)
class Transcript:
    steps: tuple[Step, ...]
    block: str  # the block's lines between its fences, as README has them

    @property
    def key(self) -> str:
        return " ; ".join(step.command for step in self.steps)


def fenced_blocks(text: str) -> Iterator[list[str]]:
    """The contents of README's fenced blocks (a block closes at a fence at least as long
    as its opening one, so ```` can hold ``` blocks)."""
    opening: str | None = None
    body: list[str] = []
    for line in text.split("\n"):
        fence = FENCE.match(line)
        if opening is None:
            if fence:
                opening, body = fence.group(1), []
        elif fence and line.strip() == "`" * len(line.strip()) and len(line) >= len(opening):
            yield body
            opening = None
        else:
            body.append(line)


def transcripts(text: str) -> list[Transcript]:
    found = []
    for body in fenced_blocks(text):
        if not any(line.startswith("$ ") for line in body):
            continue
        if not body[0].startswith("$ "):
            raise ValueError(f"a transcript must start with its command: {body[0]!r}")
        runs: list[tuple[str, list[str]]] = []  # each command and the lines after it
        for line in body:
            if line.startswith("$ "):
                runs.append((line.removeprefix("$ "), []))
            else:
                runs[-1][1].append(line)
        steps = tuple(_step(command, lines) for command, lines in runs)
        found.append(Transcript(steps, "\n".join(body)))
    return found


def _step(command: str, lines: list[str]) -> Step:
    exit_line = EXIT.match(lines[-1]) if lines else None
    if exit_line:
        return Step(command, tuple(lines[:-1]), int(exit_line.group(1)), True)
    return Step(command, tuple(lines), 0, False)


# --- comparing ------------------------------------------------------------------------------


def matches(expected: tuple[str, ...], actual: list[str]) -> bool:
    """Line for line, a `...` line matching any run of lines."""
    if not expected:
        return not actual
    if expected[0] == ELIDED:
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and actual[0] == expected[0] and matches(expected[1:], actual[1:])


def as_json(lines: tuple[str, ...]) -> object | None:
    if ELIDED in lines or not lines or not lines[0].startswith(("{", "[")):
        return None
    try:
        parsed: object = json.loads("\n".join(lines))
    except ValueError:
        return None
    return parsed


def normalise(output: str, paths: dict[str, str]) -> list[str]:
    for path, shown in sorted(paths.items(), key=lambda item: -len(item[0])):
        # a directory shown as nothing goes with its slash: /tmp/x/cwd/bad.yaml -> bad.yaml
        output = output.replace(path if shown else path + "/", shown)
    output = re.sub(r"\(pid \d+\)", "(pid 4242)", output)
    output = re.sub(r"\(\d+\.\d s\)", "(0.0 s)", output)
    assert output == "" or output.endswith("\n"), f"output without a final newline: {output!r}"
    return output.split("\n")[:-1]


def same(step: Step, actual: list[str]) -> bool:
    expected_json = as_json(step.output)
    if expected_json is not None:
        try:
            return bool(json.loads("\n".join(actual)) == expected_json)
        except ValueError:
            return False
    return matches(step.output, actual)


# --- the scenes: where each transcript's commands run ------------------------------------------

Run = Callable[[list[str]], tuple[str, int]]  # nftfwd's arguments -> its output, exit code


@dataclass(frozen=True)
class Scene:
    run: Run
    paths: dict[str, str]  # temporary path -> as README shows it


def clean_env() -> dict[str, str]:
    """This environment without what would change nftfwd's output or choice of model."""
    drop = ("FORCE_COLOR", "NFTFWD_CONFIG", "NFTFWD_STATE_DIR")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "NO_COLOR": "1"}


def run_argv(argv: list[str]) -> tuple[str, int]:
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL, env=clean_env(), timeout=120)  # fmt: skip
    return done.stdout, done.returncode


def review_files(directory: Path) -> Path:
    """bad.yaml, main.yaml (the homelab example) and nftfwd.yaml (its edited version)."""
    directory.mkdir(exist_ok=True)
    shutil.copy(DATA / "bad.yaml", directory / "bad.yaml")
    shutil.copy(HOMELAB, directory / "main.yaml")
    shutil.copy(DATA / "nftfwd.yaml", directory / "nftfwd.yaml")
    return directory


@contextlib.contextmanager
def model_files(tmp_path: Path) -> Iterator[Scene]:
    """No host: build and diff --from on the files in the current directory."""
    cwd = review_files(tmp_path / "cwd")
    yield Scene(lambda args: run_argv(["env", "-C", str(cwd), NFTFWD, *args]), {str(cwd): ""})


# /etc as on a Debian host where libvirt defined its default network: an overlay whose
# upper layer holds the model (/etc/nftfwd/nftfwd.yaml), an nftables.conf and libvirt's
# network XML; no unit enabled or installed in /etc/systemd/system, none in /run;
# nftfwd.service hidden where a package would have installed it. nftfwd runs in /.
DEBIAN_ETC = """set -e
mount -t overlay overlay -o lowerdir=/etc,upperdir="$UPPER",workdir="$WORK" /etc
mount -t tmpfs tmpfs /run
mkdir -p /etc/systemd/system /etc/libvirt
mount -t tmpfs tmpfs /etc/systemd/system
mount -t tmpfs tmpfs /etc/libvirt
mkdir -p /etc/libvirt/qemu/networks
cp "$NETWORK_XML" /etc/libvirt/qemu/networks/default.xml
for units in /usr/local/lib/systemd/system /usr/lib/systemd/system; do
  [ ! -e "$units/nftfwd.service" ] || mount -t tmpfs tmpfs "$units"
done
cd /
exec "$@"
"""


def run_with_client(argv: list[str], topo: Topology) -> tuple[str, int]:
    """`nftfwd trace PORT`: once it says to connect (its first line), client0 connects to
    the host's port; the client's port, which the kernel picks, reads 40000."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, stdin=subprocess.DEVNULL, env=clean_env())  # fmt: skip
    assert process.stdout is not None
    first = process.stdout.readline()
    if " now; waiting up to " in first:
        port = int(next(a for a in reversed(argv) if a.isdigit()))
        topo.request("client0", "tcp", topo.host_address(4), port, timeout=2)
    rest, _ = process.communicate(timeout=120)
    output = re.sub(rf"({re.escape(topo.client_address(4))}):\d+", r"\1:40000", first + rest)
    return output, process.returncode


def debian_host(topo: Topology, tmp_path: Path, model: Path, nftables_conf: str,
                network_xml: str) -> Scene:  # fmt: skip
    """nftfwd run in the topology's host namespace, on a Debian /etc (DEBIAN_ETC) of its
    own mount namespace, with the topology's state directory. `trace` (without --probe)
    gets a connection from client0 while it waits (run_with_client)."""
    upper, work = tmp_path / "upper", tmp_path / "work"
    (upper / "nftfwd").mkdir(parents=True)
    work.mkdir()
    shutil.copy(model, upper / "nftfwd" / "nftfwd.yaml")
    (upper / "nftables.conf").write_text(nftables_conf)
    xml = tmp_path / "default.xml"
    xml.write_text(network_xml)
    state = state_dir(topo)
    prefix = ["ip", "netns", "exec", topo.ns["host"], "env", f"NFTFWD_STATE_DIR={state}",
              f"UPPER={upper}", f"WORK={work}", f"NETWORK_XML={xml}", "unshare", "--mount",
              "--propagation", "private", "sh", "-c", DEBIAN_ETC, "sh"]  # fmt: skip

    def run(args: list[str]) -> tuple[str, int]:
        if args[:1] == ["trace"] and "--probe" not in args:
            return run_with_client([*prefix, NFTFWD, *args], topo)
        return run_argv([*prefix, NFTFWD, *args])

    return Scene(run, {str(state): README_STATE_DIR})


def libvirt_network(mode: str) -> str:
    """libvirt's default network of virbr0 (tests/data/libvirt), in NAT or open mode."""
    xml = LIBVIRT_DEFAULT.read_text()
    if mode == "nat":
        return xml
    return re.sub(r"<forward mode='nat'>.*</forward>", f"<forward mode='{mode}'/>", xml, flags=re.S)


@contextlib.contextmanager
def homelab_host(tmp_path: Path, connections: int) -> Iterator[Scene]:
    """The homelab host of the standard topology running main.yaml (the example), with
    `connections` connections open through the database's forward; the edited model in
    /etc/nftfwd; an nftables.conf that does not flush the ruleset (an admin who took
    doctor's advice, or ran `nftfwd install`); libvirt's network in open mode."""
    with Topology(read_model(HOMELAB), "homelab") as topo, contextlib.ExitStack() as stack:
        topo.serve("db", [5432], ("tcp",))
        load(topo, HOMELAB, "homelab")
        for guest in topo.plan.guests:  # as a libvirt qemu hook would (see doctor's fix)
            topo.run("host", ["bridge", "link", "set", "dev", guest.port, "hairpin", "on"])
        for _ in range(connections):
            session = stack.enter_context(topo.open_session("client0", topo.host_address(4), 5432))
            assert session.exchange("hello").guest == "db"
        try:
            yield debian_host(
                topo, tmp_path, DATA / "nftfwd.yaml", NO_FLUSH, libvirt_network("open")
            )
        finally:
            # a guard of `load --confirm --detach` that outlived a failed test
            for pid in Namespace(topo.ns["host"], state_dir(topo)).guards():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def seed004_host(tmp_path: Path, *, libvirt_nat: bool) -> Iterator[Scene]:
    """seed004's host (tests/seed004_host.py), Debian's stock nftables.conf, with
    libvirt's iptables rules of its default network in NAT mode; without libvirt_nat, as
    it is once doctor's fix switched the network to open mode (libvirt removes its rules)."""
    with Topology(read_model(SEED004), "localhost") as topo:
        start(topo)
        if libvirt_nat:
            load_setup(topo, "libvirt-iptables.rules")
        mode = "nat" if libvirt_nat else "open"
        yield debian_host(topo, tmp_path, SEED004, STOCK_NFTABLES_CONF.read_text(),
                          libvirt_network(mode))  # fmt: skip


@dataclass(frozen=True)
class Setting:
    scene: Callable[[Path], contextlib.AbstractContextManager[Scene]]
    kernel: bool


SCENES: dict[str, Setting] = {
    "nftfwd build bad.yaml": Setting(model_files, kernel=False),
    "nftfwd diff --from main.yaml nftfwd.yaml --format markdown": Setting(model_files, False),
    "nftfwd diff --from main.yaml nftfwd.yaml --format json": Setting(model_files, False),
    "nftfwd diff ; nftfwd load --atomic --yes ; nftfwd diff": Setting(
        lambda tmp: homelab_host(tmp, connections=3), True
    ),
    "nftfwd load --atomic --yes --confirm 60 --detach ; nftfwd confirm": Setting(
        lambda tmp: homelab_host(tmp, connections=3), True
    ),
    "nftfwd doctor": Setting(lambda tmp: seed004_host(tmp, libvirt_nat=True), True),
    "nftfwd doctor --format json": Setting(lambda tmp: seed004_host(tmp, libvirt_nat=False), True),
    "nftfwd trace 2222": Setting(lambda tmp: seed004_host(tmp, libvirt_nat=True), True),
    "nftfwd trace 2222 --from 203.0.113.100": Setting(
        lambda tmp: seed004_host(tmp, libvirt_nat=False), True
    ),
}

NOT_PRODUCIBLE = {
    "nftfwd load --atomic --confirm 60": (
        "the countdown asks on a terminal and waits up to 60 s for an answer; "
        "tests/kernel/test_kernel_confirm.py tests the countdown itself"
    ),
}


# --- the tests ------------------------------------------------------------------------------------


def readme_transcripts() -> list[Transcript]:
    return transcripts(README.read_text())


def test_every_transcript_is_checked_or_listed_with_its_reason() -> None:
    keys = [t.key for t in readme_transcripts()]
    assert len(keys) == len(set(keys)), f"two transcripts run the same commands: {keys}"
    unknown = [k for k in keys if k not in SCENES and k not in NOT_PRODUCIBLE]
    assert not unknown, f"README transcripts neither checked nor listed: {unknown}"
    stale = [k for k in [*SCENES, *NOT_PRODUCIBLE] if k not in keys]
    assert not stale, f"listed here but not in README: {stale}"


def test_the_transcript_parser() -> None:
    text = "x\n````\n$ nftfwd a\nout\n```\n...\n[exit 1]\n$ nftfwd b\n````\n```sh\nls\n```\n"
    [found] = transcripts(text)
    assert found.steps == (
        Step("nftfwd a", ("out", "```", "..."), 1, True),
        Step("nftfwd b", (), 0, False),
    )
    assert matches(("a", "...", "d"), ["a", "b", "c", "d"])
    assert matches(("a", "...", "b"), ["a", "b"])
    assert not matches(("a", "...", "d"), ["a", "b", "c"])
    assert not matches(("a",), ["a", "b"])
    assert normalise("at /tmp/s/x (pid 99) (1.3 s)\n", {"/tmp/s": "/var"}) == [
        "at /var/x (pid 4242) (0.0 s)"
    ]


def _cases() -> list[object]:
    return [
        pytest.param(key, marks=[pytest.mark.kernel] if setting.kernel else [], id=key)
        for key, setting in SCENES.items()
    ]


@pytest.mark.parametrize("key", _cases())
def test_transcript_is_what_the_commands_print(
    key: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    [transcript] = [t for t in readme_transcripts() if t.key == key]
    update = bool(request.config.getoption("--update-readme"))
    problems, steps = [], []
    with SCENES[key].scene(tmp_path) as scene:
        for step in transcript.steps:
            argv = shlex.split(step.command)
            assert argv[0] == "nftfwd", step.command
            output, code = scene.run(argv[1:])
            actual = normalise(output, scene.paths)
            if same(step, actual) and code == step.exit_code:
                steps.append(step)
                continue
            if update and ELIDED not in step.output:
                shows = step.shows_exit or code != 0
                steps.append(Step(step.command, tuple(actual), code, shows))
                continue
            steps.append(step)
            shown = [*step.output, f"[exit {step.exit_code}]"]
            real = [*actual, f"[exit {code}]"]
            diff = difflib.unified_diff(shown, real, "README", "real output", lineterm="")
            problems.append(f"$ {step.command}\n" + "\n".join(diff))
    if update:
        new_block = "\n".join(line for step in steps for line in step.text())
        text = README.read_text()
        assert text.count(transcript.block) == 1, key
        README.write_text(text.replace(transcript.block, new_block))
    assert not problems, "README differs from the real output:\n" + "\n\n".join(problems)
