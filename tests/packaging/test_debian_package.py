"""debian/ agrees with the code: version, generated files, bundled typer, launcher.

The package itself is built and tried in Debian 12 and 13 roots by .ci/package.
"""

from __future__ import annotations

import re
import zipfile

from conftest import REPO

import nftfwd
from nftfwd.distfiles import COMPLETIONS
from nftfwd.install import PACKAGED_BIN

DEBIAN = REPO / "debian"


def _rules_variable(name: str) -> str:
    found = re.search(rf"^{name} = (\S+)$", (DEBIAN / "rules").read_text(), re.MULTILINE)
    assert found, name
    return found[1]


def test_changelog_version_is_nftfwds() -> None:
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    found = re.fullmatch(r"nftfwd \((?P<version>[^)]+)\) \S+; urgency=\w+", first)
    assert found, first
    assert found["version"] == nftfwd.__version__


def test_packaging_installs_exactly_what_distfiles_generates() -> None:
    generated = _rules_variable("GENERATED")
    listed = (DEBIAN / "nftfwd.install").read_text() + (DEBIAN / "nftfwd.manpages").read_text()
    wanted = set(re.findall(rf"^{re.escape(generated)}/(\S+)", listed, re.MULTILINE))
    # nftfwd.service goes through dh_installsystemd (debian/rules copies it).
    made = {"nftfwd.1", "libvirt-hook", *map(str, COMPLETIONS.values())}
    assert wanted == made
    assert "cp $(GENERATED)/nftfwd.service debian/nftfwd.service" in (DEBIAN / "rules").read_text()
    prerm = (DEBIAN / "nftfwd.prerm").read_text()
    assert 'cmp -s "$hook" /usr/share/nftfwd/libvirt-hook' in prerm


def test_launcher_puts_the_bundled_typer_first() -> None:
    launcher = (DEBIAN / "bin" / "nftfwd").read_text()
    assert launcher.startswith("#!/usr/bin/python3\n")
    assert f'sys.path.insert(0, "{_rules_variable("VENDOR")}")' in launcher
    rules = (DEBIAN / "rules").read_text()
    assert "install -m 0755 debian/bin/nftfwd $(PKG)/usr/bin/nftfwd" in rules
    assert PACKAGED_BIN == "/usr/bin/nftfwd"


def test_bundled_typer_is_within_pyprojects_range_and_licensed() -> None:
    wheels = sorted(p.name for p in (DEBIAN / "vendor").glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["annotated_doc", "typer"]
    typer_wheel = next(w for w in wheels if w.startswith("typer-"))
    version = tuple(int(n) for n in typer_wheel.split("-")[1].split("."))
    pyproject = (REPO / "pyproject.toml").read_text()
    declared = re.search(r'"typer\s*>=\s*([\d.]+)\s*,\s*<\s*([\d.]+)\s*"', pyproject)
    assert declared, "pyproject.toml declares typer's range"
    low, high = (tuple(int(n) for n in v.split(".")) for v in declared.groups())
    assert low <= version < high
    readme = (DEBIAN / "vendor" / "README").read_text()
    for wheel in wheels:
        assert wheel in readme
        with zipfile.ZipFile(DEBIAN / "vendor" / wheel) as archive:
            assert any(n.endswith("/LICENSE") for n in archive.namelist())
    copyright_ = (DEBIAN / "copyright").read_text()
    assert "Files: debian/vendor/typer-*" in copyright_
    assert "Files: debian/vendor/annotated_doc-*" in copyright_


def test_typer_is_not_a_debian_dependency() -> None:
    overrides = (DEBIAN / "py3dist-overrides").read_text().splitlines()
    assert "typer" in overrides  # no Debian package: bundled
    control = (DEBIAN / "control").read_text()
    depends = re.search(r"^Depends:(.*(?:\n[ #].*)*)", control, re.MULTILINE)
    assert depends and "nftables" in depends[1]
    assert "typer" not in depends[1]
