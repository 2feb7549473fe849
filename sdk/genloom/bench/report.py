"""The benchmark report as a terminal table and a PNG chart."""

from __future__ import annotations

from pathlib import Path

from genloom.bench.run import BenchReport

BUSY_CORES = 0.25
"""Other processes using this many cores' worth of CPU at the start (``Machine.busy_elsewhere``) earn the table a
warning."""


def table(report: BenchReport) -> str:
    """Plain-text table: the machine, its roofs, then one line per measured row."""
    machine = report.machine
    lines = [
        f"machine: {machine.cpu}, {machine.cores} cores; provider {report.provider}; "
        f"roofs at the start: matmul {machine.matmul_gflops:.0f} GFLOP/s, memory read "
        f"{machine.read_gbytes_per_second:.1f} GB/s "
        "(each row's share is of the roof measured just before it)"
    ]
    if machine.busy_elsewhere is not None and machine.busy_elsewhere >= BUSY_CORES:
        lines.append(
            f"note: other processes used {machine.busy_elsewhere:.1f} of the {machine.cores} cores at the start; "
            "they slow the threaded rows by large factors: measure on a quiet machine"
        )
    if report.images:
        lines.append(f"{'model':<28}{'path':<26}{'batch':>6}{'images/s':>12}{'spread':>24}{'x peer':>8}{'of roof':>9}")
        for row in report.images:
            spread = f"{row.batch / row.timing.high:,.0f}-{row.batch / row.timing.low:,.0f}"
            lines.append(
                f"{row.model:<28}{row.path:<26}{row.batch:>6}{row.images_per_second:>12,.0f}{spread:>24}"
                f"{_ratio(row.ratio_to_peer):>8}{_share(row.share_of_roof):>9}"
            )
    if report.text:
        lines.append(f"{'model':<28}{'path':<26}{'batch':>6}{'tokens/s':>10}{'prefill':>17}{'x peer':>8}{'of roof':>9}")
        for text_row in report.text:
            lines.append(
                f"{text_row.model:<28}{text_row.path:<26}{text_row.batch:>6}{text_row.tokens_per_second:>10,.1f}"
                f"{text_row.prefill_seconds * 1000:>8.1f} ms/{text_row.prefill_tokens:<4}"
                f"{_ratio(text_row.ratio_to_peer):>8}{_share(text_row.share_of_roof):>9}"
            )
    if report.outputs:  # a kind without a benchmark of its own; the peer is the model's own PyTorch path
        lines.append(f"{'model':<28}{'path':<26}{'batch':>6}{'outputs/s':>12}{'spread':>24}{'x peer':>8}")
        for output_row in report.outputs:
            spread = f"{output_row.batch / output_row.timing.high:,.0f}-{output_row.batch / output_row.timing.low:,.0f}"
            lines.append(
                f"{output_row.model:<28}{output_row.path:<26}{output_row.batch:>6}"
                f"{output_row.outputs_per_second:>12,.0f}{spread:>24}{_ratio(output_row.ratio_to_peer):>8}"
            )
    lines += report.peer_unavailable
    return "\n".join(lines)


def _share(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def _ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def chart(report: BenchReport, target: Path) -> Path:
    """A PNG with two bars per row: throughput over the peer's, and as a share of the machine's roof."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{r.model} {r.path} b{r.batch}", r.ratio_to_peer, r.share_of_roof, "tab:blue") for r in report.images]
    rows += [(f"{r.model} {r.path} b{r.batch}", r.ratio_to_peer, r.share_of_roof, "tab:orange") for r in report.text]
    rows += [(f"{r.model} {r.path} b{r.batch}", r.ratio_to_peer, None, "tab:green") for r in report.outputs]
    labels, colors = [row[0] for row in rows], [row[3] for row in rows]
    figure, (versus_peer, versus_roof) = plt.subplots(1, 2, sharey=True, figsize=(12, 0.3 * len(rows) + 1.4))
    versus_peer.barh(labels, [row[1] or 0 for row in rows], color=colors)
    versus_peer.axvline(1.0, color="black", linewidth=0.8)
    versus_peer.set_xlabel(
        "throughput / the peer's (images: the bare PyTorch module, text: transformers, other kinds: genloom torch)"
        + "".join(f"\n{line}" for line in report.peer_unavailable)
    )
    versus_roof.barh(labels, [100 * (row[2] or 0) for row in rows], color=colors)
    versus_roof.set_xlabel("share of the CPU's roof (%); none for CUDA rows")
    versus_peer.invert_yaxis()
    figure.suptitle(f"genloom bench on {report.machine.cpu} ({report.provider})")
    figure.tight_layout()
    from genloom.fileio import atomic_path

    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return target
