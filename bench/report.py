"""The benchmark's printed report: a table per N, the fixed cost, errors, ratios and
targets (the JSON in bench/results/ holds every sample)."""

from __future__ import annotations

from typing import Any

from compile_speed import ISSUE_FLOOR


def fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(out: dict[str, Any]) -> str:
    per, pp = out["per_n"], out.get("packet_path", {})
    cols = [
        "N",
        "build s",
        "build MB",
        "nft -f s",
        "load s",
        "nft -f chg s",
        "load chg s",
        "list s",
        "diff s",
        "seed s",
        "map c/s",
        "rule c/s",
        "map/rule",
    ]
    rows = [cols]
    for n in out["sizes"]:
        p = per[str(n)]

        def cell(key: str, p: dict[str, Any] = p) -> str:
            s = p.get(key, {})
            if s.get("median_s") is None and s.get("error"):
                return f"ERR({s.get('error_seconds', 0):.1f}s)"
            return fmt_s(s.get("median_s"))

        seed = p.get("seed", {})
        seed_text = (
            (
                f"{seed['seconds']:.2f}"
                if seed.get("complete")
                else f">{seed['lower_bound_s']:.0f} ({seed['forwards_done']}/{n})"
            )
            if seed
            else "-"
        )
        mr = pp.get(f"map@{n}", {}).get("median_rate")
        rr = pp.get(f"rule@{n}", {}).get("median_rate")
        rows.append(
            [
                str(n),
                cell("build"),
                f"{p.get('build', {}).get('maxrss_mb', 0):.0f}",
                cell("nft_f_empty"),
                cell("load_empty"),
                cell("nft_f_change"),
                cell("load_change"),
                cell("nft_list_json"),
                cell("diff_loaded"),
                seed_text,
                f"{mr:.0f}" if mr else "-",
                f"{rr:.0f}" if rr else "-",
                f"{mr / rr:.1f}x" if mr and rr else "-",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(out: dict[str, Any]) -> str:
    fc = out.get("fixed_cost", {})
    lines = [
        f"nftfwd benchmark  ({out['meta']['date']}, kernel {out['meta']['kernel']}, "
        f"{out['meta']['cpus']} cpus, {out['meta']['nft']})",
        "",
        table(out),
        "",
    ]
    lines.append(
        "times are medians of the samples in the JSON; 'chg' = a one-forward change "
        "on a loaded host; ERR(t) = the command failed after t s (see below)"
    )
    if fc:
        lines += ["", f"fixed cost (N={fc['n']}, medians):"]
        for key, label in (
            ("python_startup", "python -c pass"),
            ("import_floor", f"python -c '{ISSUE_FLOOR}'"),
            ("import_floor_real", "import of every module build imports but nftfwd's"),
            ("import_nftfwd_cli", "python -c 'import nftfwd.cli'"),
            ("build", "nftfwd build"),
        ):
            lines.append(
                f"  {fmt_s(fc[key]['median_s']):>6} s  {fc[key]['maxrss_mb']:5.0f} MB  {label}"
            )
        lines.append(
            f"  build imports libnftables: {fc['build_imports_nftables']}; "
            f"pydantic: {fc['build_imports_pydantic']}"
        )
        shares = ", ".join(f"{k} {v}" for k, v in fc["importtime_self_ms_by_group"].items())
        lines.append(
            f"  -X importtime self ms by package (total {fc['importtime_total_ms']}): {shares}"
        )
    errors = []
    for n in out["sizes"]:
        for key, s in out["per_n"][str(n)].items():
            if isinstance(s, dict) and s.get("error"):
                errors.append(f"  N={n} {key}: {s['error']}")
    if errors:
        lines += ["", "errors:", *errors]
    pp = out.get("packet_path")
    if pp:
        checks = [
            f"N={k.split('@')[1]}: {v.get('nat_chain_passes_per_connection')}"
            for k, v in pp.items()
            if k.startswith("rule@")
        ]
        errs = sum(v.get("errors", 0) for v in pp.values() if isinstance(v, dict))
        lines += [
            "",
            f"packet path: {pp['rounds']} rounds x {pp['seconds_per_sample']} s per "
            f"ruleset and N, interleaved; failed connections: {errs}; rule-per-forward "
            f"nat chain passes per connection: {', '.join(checks)}",
        ]
    obs = out.get("observations", {})
    if obs:
        lines += ["", "ratios per N (same run):"]
        labels = (
            ("load_over_nft_f", "load / nft -f"),
            ("load_change_over_nft_f_change", "load chg / nft -f chg"),
            ("scale_vs_smallest_n", f"(load@N - load@{out['sizes'][0]}) / (nft -f ...)"),
            ("list_over_nft_f", "nft -p -j list table / nft -f"),
            ("scale_vs_proving_floor", "(load@N - load@lo) / (nft -f + list ...)"),
            ("seed_over_load", "seed / load"),
            ("seed_over_nft_f", "seed / nft -f"),
            ("map_rate_over_rule_rate", "rate map / rule"),
            ("map_rate_over_map_rate_at_smallest_n", f"rate map@N / map@{out['sizes'][0]}"),
        )
        width = max(len(label) for _, label in labels)
        lines.append(" " * (width + 2) + "".join(f"{n:>9}" for n in out["sizes"]))
        for key, label in labels:
            cells = []
            for n in out["sizes"]:
                v = obs[str(n)].get(key)
                cells.append(f"{v:>8.2f}x" if v is not None else f"{'-':>9}")
            lines.append(f"  {label:<{width}}" + "".join(cells))
        lines.append("  (seed ratios use the seed's lower bound where it was stopped)")
    lines += ["", "targets (issue 5):"]
    for row in out["targets"]:
        lines.append(f"  {row['status']:4}  {row['target']} {row['limit']}: {row['measured']}")
    lines += ["", f"total {out['total_seconds']:.0f} s"]
    return "\n".join(lines)
