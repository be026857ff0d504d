"""Turn results into Markdown tables, the goals of issue 3 with their ratios, and PNG plots."""

from __future__ import annotations

from pathlib import Path

BEGIN = "<!-- results:begin (written by python -m benchmarks.run) -->"
END = "<!-- results:end -->"
MiB = 1 << 20
DOCS = Path(__file__).resolve().parents[1] / "docs"


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // 1024} KiB"


def _table(rows: list[dict], columns: list[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_size(row[c]) if c == "size" else str(row.get(c, "")) for c in columns]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def goals(results: dict) -> list[tuple[str, str, str, bool]]:
    """(measure, goal, measured, met) for each goal that the results cover."""
    out = []
    big = [r for r in results.get("large", []) if r["size"] >= 16 * MiB]
    if big:
        worst_raw = min(min(r["write vs raw socket"], r["read vs raw socket"]) for r in big)
        worst_round = min(min(r["write vs raw socket, worst round"],
                              r["read vs raw socket, worst round"]) for r in big)
        worst_redis = min(min(r["write vs redis"], r["read vs redis"]) for r in big)
        out.append(("read and write, objects >= 16 MiB", ">= 0.8 x raw sockets",
                    f"{worst_raw} x (worst case of the medians; worst round {worst_round} x)",
                    worst_raw >= 0.8))
        out.append(("read and write, objects >= 16 MiB", ">= 3 x redis-py",
                    f"{worst_redis} x (worst case)", worst_redis >= 3))
    get1k = [r for r in results.get("small", []) if r["size"] == 1024 and r["op"] == "get"]
    if get1k:
        r = get1k[0]
        out.append(("1 KiB get, p50", "<= 0.5 x redis-py GET", f"{r['p50 vs redis']} x "
                    f"({r['crailpy p50_us']} us)", r["p50 vs redis"] <= 0.5))
        out.append(("1 KiB get, p50", "<= 3 x raw socket round trip", f"{r['p50 vs raw socket']} x",
                    r["p50 vs raw socket"] <= 3))
    lookups = [r for r in results.get("metadata", []) if r["op"] == "lookup" and r["in flight"] == 64]
    if lookups:
        rate = lookups[0]["ops/s"]
        out.append(("metadata lookups, 64 in flight", ">= 50,000 ops/s", f"{rate:,} ops/s",
                    rate >= 50_000))
    if "shuffle" in results:
        s = results["shuffle"]
        out.append((f"shuffle {s['writers']} x {s['readers']}", ">= 2 x Redis", f"{s['vs redis']} x",
                    s["vs redis"] >= 2))
    if "coldstart" in results:
        c = results["coldstart"]
        out.append(("cold start", "<= 0.3 x redis-py", f"{c['vs redis']} x ({c['crailpy ms']} ms)",
                    c["vs redis"] <= 0.3))
    if "memory" in results:
        m = results["memory"]
        out.append(("datanode memory", "<= 1.1 x capacity", f"{m['datanode RSS vs capacity']} x",
                    m["datanode RSS vs capacity"] <= 1.1))
        out.append((f"namenode memory at {m['files']:,} files", "<= 1 KiB per file",
                    f"{m['namenode bytes per file']} B", m["namenode bytes per file"] <= 1024))
    return out


def plot(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    rows = results.get("large", [])
    for clients in sorted({r["clients"] for r in rows}):
        mine = [r for r in rows if r["clients"] == clients]
        fig, ax = plt.subplots(figsize=(7, 4))
        sizes = [r["size"] / MiB for r in mine]
        for system in ("crailpy", "raw socket", "redis"):
            for op, style in (("write", "-o"), ("read", "--s")):
                ax.plot(sizes, [r[f"{system} {op} MB/s"] for r in mine], style,
                        label=f"{system} {op}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("object size (MiB)")
        ax.set_ylabel("MB/s (all clients)")
        ax.set_title(f"Large objects, {clients} client process{'es' if clients > 1 else ''}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        name = f"large-{clients}-clients.png"
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        names.append(name)
    rows = results.get("small", [])
    if rows:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = [f"{r['op']} {_size(r['size'])}" for r in rows]
        width = 0.25
        for i, system in enumerate(("crailpy", "redis", "raw socket")):
            xs = [x + i * width for x in range(len(rows))]
            ax.bar(xs, [r[f"{system} p50_us"] for r in rows], width, label=f"{system} p50")
            ax.scatter(xs, [r[f"{system} p99_us"] for r in rows], marker="_", s=200, color="black")
        ax.set_xticks([x + width for x in range(len(rows))], labels)
        ax.set_ylabel("latency (us); bars p50, ticks p99")
        ax.set_title("Small objects, one client")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(out / "small-latency.png", dpi=100)
        plt.close(fig)
        names.append("small-latency.png")
    return names


def render(results: dict, out: Path) -> str:
    m = results["machine"]
    parts = [f"Run {results['date']}, {results['seconds']} s, on {m['cpus']} x {m['cpu']}, "
             f"{m['memory']}, Python {m['python']}, Linux {m['kernel']}"
             f"{' (quick: tiny sizes, not figures)' if results['quick'] else ''}."]
    rows = goals(results)
    if rows:
        parts.append("### Goals\n\n" + _table(
            [{"measure": a, "goal": b, "measured": c, "met": "yes" if d else "**no**"}
             for a, b, c, d in rows], ["measure", "goal", "measured", "met"]))
    if "large" in results:
        cols = ["clients", "size"] + [f"{s} {op} MB/s" for s in ("crailpy", "raw socket", "redis")
                                      for op in ("write", "read")]
        cols += ["write vs raw socket", "read vs raw socket", "write vs raw socket, worst round",
                 "read vs raw socket, worst round", "write vs redis", "read vs redis"]
        parts.append("### Large objects\n\n" + _table(results["large"], cols))
    if "small" in results:
        cols = ["size", "op"] + [f"{s} {k}" for s in ("crailpy", "redis", "raw socket")
                                 for k in ("p50_us", "p99_us", "ops_s")]
        cols += ["p50 vs redis", "p50 vs raw socket"]
        parts.append("### Small objects (one client)\n\n" + _table(results["small"], cols))
    if "metadata" in results:
        parts.append("### Metadata\n\n" + _table(results["metadata"], ["op", "in flight", "ops/s"]))
    for key, title in (("shuffle", "Shuffle"), ("coldstart", "Cold start"), ("memory", "Memory")):
        if key in results:
            parts.append(f"### {title}\n\n" + _table([results[key]], list(results[key])))
    images = plot(results, out)
    if images:
        rel = out.name if out.parent.name == "docs" else str(out)
        parts.append("\n".join(f"![{name}]({rel}/{name})" for name in images))
    return "\n\n".join(parts) + "\n"


def insert(doc: Path, markdown: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace what stands between the markers `begin` and `end` in `doc` with `markdown`."""
    text = doc.read_text()
    if begin not in text or end not in text:
        raise RuntimeError(f"{doc} has no markers {begin!r} and {end!r}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{markdown}{end}{tail}")
