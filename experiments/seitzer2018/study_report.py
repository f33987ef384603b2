"""The study's statistics and figure: each setting over seeds (paired with the default point by seed), the tables of
``results/study/`` and SIS against PSNR (one point per run, λ at the end of training in the key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from csmri.reporting import markdown_table, save_figure, write_strict_json


def write(
    results: Path, rows: list[dict[str, Any]], references: dict[str, dict[str, Any]], split: str, profile: str
) -> Path:
    """``table.md``, ``table.json`` and ``figure.png`` of the study's ``rows`` (one per run) and ``references`` (RecNet,
    DAGAN) on ``split`` of pipeline ``profile``; returns ``results``."""
    results.mkdir(parents=True, exist_ok=True)
    header = ["run", "α target", "w_vgg", "backbone", "seed", "λ (end)", "PSNR (dB)", "SSIM", "SIS"]
    body = [
        [name, "", "", "", "", "", f"{r['psnr']:.2f}", f"{r['ssim']:.3f}", _fmt(r["sis"])]
        for name, r in references.items()
    ]
    for r in rows:
        body.append(
            [
                r["name"],
                f"{r['alpha_target']:g}",
                f"{r['vgg_weight']:g}",
                f"`{r['backbone']}`",
                str(r["seed"]),
                f"{r['lambda']:+.3f}",
                f"{r['psnr']:.2f}",
                f"{r['ssim']:.3f}",
                _fmt(r["sis"]),
            ]
        )
    where = "validation split (`val`)" if split == "val" else f"`{split}` split"
    note = (
        f"\n\n{where} of profile `{profile}` (settings are chosen on it, never on the test "
        "split); every refinement run evaluated at its last checkpoint; same fixed per-slice masks for every run.\n"
    )
    settings = over_seeds(rows)
    if settings:
        note += "\n" + seeds_table(settings)
    (results / "table.md").write_text(markdown_table(header, body) + note)
    write_strict_json(results / "table.json", {"references": references, "runs": rows, "settings": settings})
    sis_psnr_figure(rows, references, results / "figure.png")
    return results


def over_seeds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The settings (α target, w_vgg, backbone) that ran with more than one seed, the default point first: their
    seeds, mean / min / max of PSNR, SSIM and SIS, and, for the others, ``delta`` — seed -> their PSNR and SIS minus
    the default point's at that seed (paired by seed: the same initialisation, training masks and batch order).
    Empty if no setting ran twice. Runs without an SIS (structure absent) count for PSNR and SSIM only."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["alpha_target"], r["vgg_weight"], r["backbone"]), []).append(r)
    default = next((g for g in groups.values() if any(r.get("default") for r in g)), None)
    by_seed = {r["seed"]: r for r in default or []}
    out = []
    for (alpha, weight, backbone), runs in sorted(groups.items(), key=lambda kv: kv[1] is not default):
        if len(runs) < 2:
            continue
        stats: dict[str, Any] = {"alpha_target": alpha, "vgg_weight": weight, "backbone": backbone}
        stats |= {"default": runs is default, "seeds": [r["seed"] for r in runs]}
        for metric in ("psnr", "ssim", "sis"):
            values = [r[metric] for r in runs if r[metric] is not None]
            stats[metric] = (
                {"mean": sum(values) / len(values), "min": min(values), "max": max(values)} if values else None
            )
        if runs is not default:
            stats["delta"] = {
                r["seed"]: {m: _difference(r[m], by_seed[r["seed"]][m]) for m in ("psnr", "sis")}
                for r in runs
                if r["seed"] in by_seed
            }
        out.append(stats)
    return out


def _difference(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else value - reference


def seeds_table(settings: list[dict[str, Any]]) -> str:
    """``over_seeds``'s summary as markdown, with a sentence saying how to read it."""

    def spread(stat: dict[str, float] | None, digits: int) -> str:
        if stat is None:
            return "n/a"
        return f"{stat['mean']:.{digits}f} ({stat['min']:.{digits}f} to {stat['max']:.{digits}f})"

    def deltas(s: dict[str, Any], metric: str, digits: int) -> str:
        if s["default"]:
            return "—"
        if not s.get("delta"):
            return "n/a (no seed shared with the default point)"
        shown = [f"{d[metric]:+.{digits}f}" for d in s["delta"].values() if d[metric] is not None]
        return ", ".join(shown) or "n/a"

    header = ["setting", "seeds", "PSNR (dB): mean (min to max)", "SSIM: mean", "SIS: mean (min to max)"]
    header += ["ΔPSNR vs default, per seed", "ΔSIS vs default, per seed"]
    body = []
    for s in settings:
        label = f"α target {s['alpha_target']:g}, w_vgg {s['vgg_weight']:g}, `{s['backbone']}`"
        body.append(
            [
                label + (" (default)" if s["default"] else ""),
                ", ".join(str(seed) for seed in s["seeds"]),
                spread(s["psnr"], 2),
                "n/a" if s["ssim"] is None else f"{s['ssim']['mean']:.3f}",
                spread(s["sis"], 3),
                deltas(s, "psnr", 2),
                deltas(s, "sis", 3),
            ]
        )
    return (
        "Over seeds (each setting that ran with more than one seed; Δ: the setting minus the default point at the same "
        "seed). Read a difference against the default point's own range: one that keeps its sign at every seed and "
        "exceeds that range is unlikely to be seed noise; with a handful of seeds this is a reading, not a test.\n\n"
        + markdown_table(header, body)
        + "\n"
    )


def metrics(row: dict[str, Any]) -> dict[str, Any]:
    return {"psnr": row.get("psnr_mean"), "ssim": row.get("ssim_mean"), "sis": row.get("sis")}


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


_SWEEP_STYLES = {
    "alpha": ("o", "tab:blue", "refinement, α target swept", lambda p: f"α·L_pen={p['alpha_target']:g}"),
    "weights": ("s", "tab:orange", "refinement, w_vgg swept", lambda p: f"w_vgg={p['vgg_weight']:g}"),
    "backbone": ("D", "tab:green", "refinement, backbone swept", lambda p: str(p["backbone"])),
    "seed": ("v", "tab:purple", "refinement, default point, other seed", lambda p: f"seed={p['seed']}"),
}


def zoom_limits(
    rows: list[dict[str, Any]], references: dict[str, dict[str, Any]], pad: tuple[float, float] = (0.25, 0.02)
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """``((psnr_lo, psnr_hi), (sis_lo, sis_hi))`` around the runs and the first reference (RecNet), ``pad`` (dB, SIS)
    wider on each side; the other references (DAGAN) may fall outside. ``None`` without a point that has an SIS."""
    first = next(iter(references.values()), None)
    shown = [r for r in [*rows, *([first] if first else [])] if r.get("sis") is not None]
    if not shown:
        return None
    psnr, sis = [r["psnr"] for r in shown], [r["sis"] for r in shown]
    return (min(psnr) - pad[0], max(psnr) + pad[0]), (min(sis) - pad[1], max(sis) + pad[1])


def point_key(rows: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], str]]:
    """The zoomed panel's key: ``(number, row, text)`` per run with an SIS, numbered from 1 in sweep order (the
    order of ``_SWEEP_STYLES``), the text naming the run's setting (and a seeded repeat's seed) and its λ."""
    key = []
    for sweep, (_, _, _, tagger) in _SWEEP_STYLES.items():
        for p in (r for r in rows if r["sweep"] == sweep and r["sis"] is not None):
            repeat = p["name"].split("/")[0] not in _SWEEP_STYLES  # a seeded repeat (<sweep>-seed<s>): say its seed
            seed = f", seed={p['seed']}" if repeat else ""
            key.append((len(key) + 1, p, f"{tagger(p)}{seed}, λ={p['lambda']:+.3f}"))
    return key


def sis_psnr_figure(rows: list[dict[str, Any]], references: dict[str, dict[str, Any]], path: Path) -> Path:
    """SIS against PSNR: one point per run (α, weight, backbone, seed sweeps), λ annotated; RecNet, DAGAN as references.

    Left: every point. Middle: zoomed to the runs and the first reference (RecNet) — a far-off reference (DAGAN)
    would otherwise squeeze the runs together — each run numbered. Right: the key of those numbers (setting and λ at
    the end), which stays legible however close the runs lie."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (overview, zoom, legend) = plt.subplots(1, 3, figsize=(15, 4.8), width_ratios=[1, 1, 0.55])
    key = point_key(rows)  # the runs plotted, numbered
    for sweep, (marker, colour, label, _) in _SWEEP_STYLES.items():
        points = [p for _, p, _ in key if p["sweep"] == sweep]
        for ax in (overview, zoom) if points else ():
            ax.scatter([p["psnr"] for p in points], [p["sis"] for p in points], marker=marker, c=colour, label=label)
    legend.axis("off")
    line = min(0.06, 1 / max(len(key), 1))  # the key's line height (axes fraction): long keys are set tighter
    for number, p, text in key:
        colour = _SWEEP_STYLES[p["sweep"]][1]
        zoom.annotate(
            str(number), (p["psnr"], p["sis"]), xytext=(4, 3), textcoords="offset points", fontsize=7, color=colour
        )
        legend.text(
            0,
            1 - line * (number - 1),
            f"{number}  {text}",
            transform=legend.transAxes,
            fontsize=min(8, 130 * line),
            color=colour,
            va="top",
        )
    for i, ((name, ref), marker) in enumerate(zip(references.items(), ("*", "X"), strict=False)):
        if ref["sis"] is not None:
            for ax in (overview, zoom) if i == 0 else (overview,):
                ax.scatter([ref["psnr"]], [ref["sis"]], marker=marker, s=140, c="black", label=name)
            if i == 0:
                zoom.annotate(name, (ref["psnr"], ref["sis"]), xytext=(8, -12), textcoords="offset points", fontsize=8)
    limits = zoom_limits(rows, references)
    if limits is not None:
        zoom.set_xlim(*limits[0])
        zoom.set_ylim(*limits[1])
    for ax, title in ((overview, "all runs and references"), (zoom, "the runs, zoomed (numbers: see the key)")):
        ax.set_xlabel("PSNR (dB)")
        ax.set_ylabel("SIS")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    legend.set_title("run (λ at the end of training)", fontsize=10, loc="left")
    overview.legend(fontsize=8, loc="best")
    fig.suptitle("Stage-2 study: SIS against PSNR (validation split)")
    return save_figure(fig, path)
