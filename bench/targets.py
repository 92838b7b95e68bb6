"""The benchmark's judgement: the targets of issue 5 (PASS/MISS with the measured
figure) and the ratios measured side by side per N, from the results of one run."""

from __future__ import annotations

from typing import Any

from report import fmt_s


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _median(p: dict[str, Any], key: str) -> float | None:
    """The median seconds of one measured step of one N (None: not measured or failed)."""
    value = p.get(key, {}).get("median_s")
    return None if value is None else float(value)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    sizes = out["sizes"]
    lo, hi = str(sizes[0]), str(sizes[-1])
    per = out["per_n"]
    fc = out.get("fixed_cost", {})

    def m(n: str, key: str) -> float | None:
        return _median(per.get(n, {}), key)

    def err(n: str, key: str) -> str | None:
        error = per.get(n, {}).get(key, {}).get("error")
        return None if error is None else str(error)

    rows: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float | None,
        op: str,
        limit: float,
        shown: str,
        why_missing: str | None = None,
        unknown: str = "MISS",
    ) -> None:
        if value is None:
            rows.append(
                {
                    "target": name,
                    "limit": f"{op} {limit:g}",
                    "value": None,
                    "status": unknown,
                    "measured": why_missing or "not measured",
                }
            )
            return
        ok = value <= limit if op == "<=" else value >= limit if op == ">=" else value < limit
        rows.append(
            {
                "target": name,
                "limit": f"{op} {limit:g}",
                "value": round(value, 3),
                "status": "PASS" if ok else "MISS",
                "measured": shown,
            }
        )

    d_load = _minus(m(hi, "load_empty"), m(lo, "load_empty"))
    d_nft = _minus(m(hi, "nft_f_empty"), m(lo, "nft_f_empty"))
    scale = ratio(d_load, d_nft)
    why = None
    if err(hi, "load_empty"):
        why = f"nftfwd load fails at N={hi}: {err(hi, 'load_empty')}"
    elif d_nft is not None and d_nft < 0.05:
        why = f"nft -f@{hi} - nft -f@{lo} = {d_nft:.3f} s: below the noise at this N"
        scale = None
    unknown = "n/a" if why and "noise" in why else "MISS"
    add(
        f"scale: (load@{hi} - load@{lo}) / (nft -f@{hi} - nft -f@{lo})",
        scale,
        "<=",
        3,
        f"{fmt_s(d_load)} s / {fmt_s(d_nft)} s = {scale:.2f}x" if scale else "",
        why,
        unknown,
    )
    floor = fc.get("import_floor", {}).get("median_s")
    b10 = fc.get("build", {}).get("median_s")
    r = ratio(b10, floor)
    add(
        f"fixed: build@{fc.get('n', lo)} / import floor",
        r,
        "<=",
        1.5,
        f"{fmt_s(b10)} s / {fmt_s(floor)} s = {r:.2f}x" if r else "",
    )
    l10 = m(lo, "load_empty")
    r = ratio(l10, floor)
    add(
        f"fixed: load@{lo} / import floor",
        r,
        "<=",
        2.5,
        f"{fmt_s(l10)} s / {fmt_s(floor)} s = {r:.2f}x" if r else "",
        f"nftfwd load fails at N={lo}: {err(lo, 'load_empty')}" if err(lo, "load_empty") else None,
    )
    seed = per.get(hi, {}).get("seed", {})
    seed_s = seed.get("lower_bound_s")
    load_hi = m(hi, "load_empty")
    r = ratio(seed_s, load_hi)
    shown = ""
    if r:
        bound = "" if seed.get("complete") else ">= "
        shown = f"{bound}{r:.1f}x (seed {seed.get('text')} vs load {fmt_s(load_hi)} s)"
    add(
        f"seed / nftfwd load at {hi}",
        r,
        ">=",
        100,
        shown,
        f"nftfwd load fails at N={hi}: {err(hi, 'load_empty')}"
        if err(hi, "load_empty")
        else ("seed not measured" if not seed else None),
    )
    pp = out.get("packet_path", {})
    a = pp.get(f"map@{hi}", {}).get("median_rate")
    b = pp.get(f"map@{lo}", {}).get("median_rate")
    r = ratio(a, b)
    add(
        f"packet: map rate last-of-{hi} / last-of-{lo}",
        r,
        ">=",
        0.9,
        f"{a:.0f} / {b:.0f} conn/s = {r:.2f}x" if r else "",
    )
    mem = per.get(hi, {}).get("build", {}).get("maxrss_mb")
    add(f"memory: build@{hi} peak RSS (MB)", mem, "<", 150, f"{mem} MB" if mem else "")
    return rows


def observations(out: dict[str, Any]) -> dict[str, Any]:
    """Side-by-side ratios per N, beyond the targets (also where a target cannot be judged)."""
    per, pp = out["per_n"], out.get("packet_path", {})
    lo = str(out["sizes"][0])
    obs: dict[str, Any] = {}
    for n in out["sizes"]:
        p, key = per[str(n)], str(n)

        def m(k: str, p: dict[str, Any] = p) -> float | None:
            return _median(p, k)

        seed = p.get("seed", {}).get("lower_bound_s")
        mr = pp.get(f"map@{n}", {}).get("median_rate")
        rr = pp.get(f"rule@{n}", {}).get("median_rate")
        m10 = pp.get(f"map@{lo}", {}).get("median_rate")
        proving = _proving_floor(p)
        proving_lo = _proving_floor(per[lo])
        entry = {
            "load_over_nft_f": ratio(m("load_empty"), m("nft_f_empty")),
            "list_over_nft_f": ratio(m("nft_list_json"), m("nft_f_empty")),
            "scale_vs_proving_floor": ratio(
                _minus(m("load_empty"), _median(per[lo], "load_empty")),
                _minus(proving, proving_lo),
            )
            if key != lo
            else None,
            "load_change_over_nft_f_change": ratio(m("load_change"), m("nft_f_change")),
            "seed_over_load": ratio(seed, m("load_empty")),
            "seed_over_nft_f": ratio(seed, m("nft_f_empty")),
            "map_rate_over_rule_rate": ratio(mr, rr),
            "map_rate_over_map_rate_at_smallest_n": ratio(mr, m10),
            "scale_vs_smallest_n": ratio(
                _minus(m("load_empty"), _median(per[lo], "load_empty")),
                _minus(m("nft_f_empty"), _median(per[lo], "nft_f_empty") or 0.0),
            )
            if key != lo
            else None,
        }
        obs[key] = {k: (round(v, 3) if v is not None else None) for k, v in entry.items()}
    return obs


def _proving_floor(p: dict[str, Any]) -> float | None:
    """The kernel work of a load into an empty host that reads its result back: `nft -f`
    plus one `nft -p -j list table` (on a loaded host the live table is listed too)."""
    load, listing = _median(p, "nft_f_empty"), _median(p, "nft_list_json")
    return None if load is None or listing is None else load + listing
