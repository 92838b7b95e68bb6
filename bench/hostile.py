"""What hostile model files cost nftfwd to refuse: time, peak memory, bytes of output.

    .venv/bin/python bench/hostile.py            # about a minute on 2 shared cores

Not part of bench/run.py (it needs neither root nor the kernel, and takes a while). Each
case runs `nftfwd build FILE` in a child process and reports its wall and CPU time, its
peak resident memory (ru_maxrss) and how many bytes it wrote, next to the same for a
10-forward model (what any run costs: Python and the imports). The inputs:

- junk 50 MB: 50 MB of unknown top-level keys (refused by the size limit unread);
- deep nesting: a megabyte of `[`;
- alias bomb: 612 bytes of nested YAML aliases ("billion laughs", 9^11 nodes expanded);
- junk at the limit: unknown keys up to just under the default size limit (8 MiB);
- short values at the limit: `- 1` lines up to the limit (the most values per byte).

In that order, of growing cost: the peak memory reported for children is the largest
so far, so each figure is that case's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import models  # noqa: E402

HEADER = "version: 1\nhosts:\n  h:\n    uplinks: [eth0]\n"
LIMIT = 8 * 1024 * 1024  # nftfwd.source.DEFAULT_MAX_MODEL_BYTES


def alias_bomb(size: int = 612, levels: int = 11) -> str:
    """A model with `levels` levels of nine aliases each, padded to `size` bytes."""
    names = "abcdefghijklmnopqrstuvwxyz"
    lines = ["lol0: &a [" + ", ".join(['"lol"'] * 9) + "]"]
    for i in range(1, levels):
        lines.append(f"lol{i}: &{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * 9) + "]")
    text = HEADER + "\n".join(lines) + "\n"
    padding = size - len(text) - len("#\n")
    if padding < 0:
        raise ValueError(f"{levels} levels take more than {size} bytes")
    return "#" + " " * padding + "\n" + text


def write_junk_keys(path: Path, size: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        total, n = len(HEADER), 0
        while total < size - 32:
            line = f"junk{n}: {n}\n"
            out.write(line)
            total += len(line)
            n += 1


def write_short_values(path: Path, size: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER + "junk:\n")
        for _ in range((size - len(HEADER) - len("junk:\n")) // 4):
            out.write("- 1\n")


def measure(path: Path) -> dict[str, float | int]:
    """`nftfwd build PATH` in a child: wall and CPU seconds, peak RSS, output bytes."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "nftfwd", "build", str(path)],
        capture_output=True,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if b"Traceback" in run.stderr:
        raise SystemExit(f"{path.name}: a traceback\n{run.stderr.decode(errors='replace')}")
    return {
        "exit": run.returncode,
        "wall_s": round(wall, 3),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 3),
        # ru_maxrss of RUSAGE_CHILDREN is the largest child's so far (see the docstring).
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),
        "output_bytes": len(run.stdout) + len(run.stderr),
        "input_bytes": path.stat().st_size,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    args = parser.parse_args(argv)
    cases: dict[str, Callable[[Path], None]] = {
        "baseline: 10 forwards": lambda p: p.write_text(models.model_yaml(10)),
        "junk keys, 50 MB": lambda p: write_junk_keys(p, 50 * 1000 * 1000),
        "deep nesting (1 MB of '[')": lambda p: p.write_text(
            HEADER + "junk: " + "[" * 1_000_000 + "\n"
        ),
        "alias bomb (612 bytes)": lambda p: p.write_text(alias_bomb()),
        "junk keys, at the 8 MiB limit": lambda p: write_junk_keys(p, LIMIT),
        "'- 1' lines, at the 8 MiB limit": lambda p: write_short_values(p, LIMIT),
    }
    results = {}
    with tempfile.TemporaryDirectory(prefix="nftfwd-hostile-") as tmp:
        # All inputs are written first, line by line: a child process starts as a copy
        # of this one, and its peak memory counts what this one held.
        paths = {name: Path(tmp) / f"case{i}.yaml" for i, name in enumerate(cases)}
        for name, write in cases.items():
            write(paths[name])
        for name, path in paths.items():
            results[name] = measure(path)
            if not args.json:
                r = results[name]
                print(
                    f"{name:34} exit {r['exit']}  {r['wall_s']:7.3f} s wall  "
                    f"{r['cpu_s']:7.3f} s cpu  {r['peak_rss_mb']:7.1f} MB peak  "
                    f"{r['output_bytes']:6} bytes out  ({r['input_bytes']} bytes in)",
                    flush=True,
                )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.pop("NFTFWD_MAX_MODEL_SIZE", None)
    sys.exit(main(sys.argv[1:]))
