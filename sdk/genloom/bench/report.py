"""The benchmark report as a terminal table and a PNG chart."""

from __future__ import annotations

from pathlib import Path

from genloom.bench.run import BenchReport


def table(report: BenchReport) -> str:
    """Plain-text table: the machine, its roofs, then one line per measured row."""
    machine = report.machine
    lines = [f"machine: {machine.cpu}, {machine.cores} cores; provider {report.provider}; "
             f"roofs: matmul {machine.matmul_gflops:.0f} GFLOP/s, memory read {machine.read_gbytes_per_second:.1f} GB/s"]
    if report.images:
        lines.append(f"{'model':<28}{'path':<22}{'batch':>6}{'images/s':>12}{'spread':>24}{'x peer':>8}{'of roof':>9}")
        for row in report.images:
            spread = f"{row.batch / row.timing.high:,.0f}-{row.batch / row.timing.low:,.0f}"
            peer = f"{row.ratio_to_peer:.2f}" if row.ratio_to_peer else "-"
            lines.append(f"{row.model:<28}{row.path:<22}{row.batch:>6}{row.images_per_second:>12,.0f}{spread:>24}{peer:>8}{row.share_of_roof:>9.1%}")
    if report.text:
        lines.append(f"{'model':<28}{'path':<26}{'batch':>6}{'tokens/s':>10}{'prefill':>17}{'x peer':>8}{'of roof':>9}")
        for row in report.text:
            peer = f"{row.ratio_to_peer:.2f}" if row.ratio_to_peer else "-"
            lines.append(f"{row.model:<28}{row.path:<26}{row.batch:>6}{row.tokens_per_second:>10,.1f}"
                         f"{row.prefill_seconds * 1000:>8.1f} ms/{row.prefill_tokens:<4}{peer:>8}{row.share_of_roof:>9.1%}")
    return "\n".join(lines)


def chart(report: BenchReport, target: Path) -> Path:
    """A PNG with one bar per row: throughput as a share of the machine's roof."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{r.path} b{r.batch}", r.share_of_roof, "images") for r in report.images]
    rows += [(f"{r.path} b{r.batch}", r.share_of_roof, "text") for r in report.text]
    figure, axis = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.2))
    axis.barh([label for label, _, _ in rows], [share * 100 for _, share, _ in rows],
              color=["tab:blue" if kind == "images" else "tab:orange" for _, _, kind in rows])
    axis.invert_yaxis()
    axis.set_xlabel("share of the machine's roof (%)")
    axis.set_title(f"genloom bench on {report.machine.cpu} ({report.provider})")
    figure.tight_layout()
    from genloom.fileio import atomic_path

    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return target
