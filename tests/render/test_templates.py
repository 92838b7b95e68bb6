"""templates/ through compiler/templating.py: jinja2 only on the paths that render one."""

from __future__ import annotations

import subprocess
import sys


def _imports_jinja2(*modules: str) -> bool:
    code = f"import sys\nimport {', '.join(modules)}\nprint('jinja2' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return out.strip() == "True"


def test_load_doctor_and_the_libvirt_hook_import_no_jinja2() -> None:
    # The CLI imports install (for MODEL) on every command, doctor imports libvirt (for
    # open_mode_steps): their templates are rendered only when asked for.
    assert not _imports_jinja2(
        "nftfwd.cli",
        "nftfwd.install",
        "nftfwd.libvirt",
        "nftfwd.render_json",
        "nftfwd.kernel.load",
        "nftfwd.kernel.hook",
    )


def test_rendering_imports_jinja2() -> None:
    assert _imports_jinja2("nftfwd.render_nft")
