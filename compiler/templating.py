"""The one jinja2 environment that renders every template in templates/.

The templates lay text out; they decide nothing. Every value a user wrote reaches them
already validated and quoted by the Python that renders them (the nft renderer's
typed values, the unit's systemd quoting, the hook's shell quoting, the skeleton's
YAML quoting): autoescape is off because none of these texts is HTML.

Imported only where a template is rendered (`build`, `install`, the Debian package's
files, `libvirt import`): jinja2 takes tens of milliseconds to import, which `load` and
the libvirt hook do without.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import jinja2


@cache
def environment() -> jinja2.Environment:
    templates = resources.files("nftfwd.templates")
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: templates.joinpath(name).read_text("utf-8")),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def add_filters(**filters: Callable[..., str]) -> None:
    """Make `filters` available to the templates (a renderer registers its own, once).

    A name already taken by another function is refused: two renderers would otherwise
    silently share one name with two meanings.
    """
    env = environment()
    for name, function in filters.items():
        if env.filters.setdefault(name, function) is not function:
            raise ValueError(f"template filter {name!r} is already registered")


def render(name: str, /, **context: Any) -> str:
    """The text of template `name` (a file in templates/) for `context`."""
    return environment().get_template(name).render(**context)
