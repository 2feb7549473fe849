"""The ``genloom`` command line, built on the public API.

Bad input prints one line on stderr (``genloom: error: ...``) and exits 2;
only a bug in genloom or a plugin shows a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import annotated_types
import click

from genloom.errors import GenloomError
from genloom.fileio import check_output_file

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``genloom`` console script."""
    from genloom.training import TrainingInterrupted

    try:
        code = cli.main(args=argv, prog_name="genloom", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "genloom"
        _fail(f"{exc.format_message()} (see `{where} --help`)", EXIT_BAD_INPUT)
    except click.ClickException as exc:
        _fail(exc.format_message(), EXIT_BAD_INPUT)
    except (click.Abort, TrainingInterrupted) as exc:
        _fail(str(exc) or "aborted", EXIT_INTERRUPTED)
    except GenloomError as exc:
        if exc.from_rank_0:  # rank 0 of the same torchrun run prints it
            sys.exit(EXIT_BAD_INPUT)
        _fail(str(exc), EXIT_BAD_INPUT)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    rank = os.environ.get("RANK", "0") if os.environ.get("WORLD_SIZE", "1") != "1" else "0"
    click.echo(f"genloom: error: {'' if rank == '0' else f'rank {rank}: '}{message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="genloom")
def cli() -> None:
    """genloom: train generative models, export them to ONNX, generate anywhere."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json: bool) -> None:
    """List plugins (with load errors), kinds of data, generators and data sources."""
    from genloom.plugins import get_registry

    registry = get_registry()
    generators = {name: _generator_row(reg) for name, reg in registry.entries["generator"].items()}
    sources = {
        name: {
            "usage": reg.value.usage,
            "modality": reg.value.modality,
            "description": reg.value.description,
            "plugin": reg.plugin,
        }
        for name, reg in registry.entries["data source"].items()
    }
    conflicts = [{"kind": kind, "name": name, "plugins": owners} for (kind, name), owners in registry.conflicts.items()]
    if as_json:
        report = {
            "plugins": [vars(info) for info in registry.plugins],
            "generators": generators,
            "data_kinds": {name: registry.kind(name).description for name in registry.names("data kind")},
            "data_sources": sources,
            "exporters": {
                name: {
                    "produces": reg.value.produces,
                    "options": list(reg.value.options),
                    "description": reg.value.description,
                }
                for name, reg in registry.entries["exporter"].items()
            },
            "runtime_drivers": registry.names("runtime driver"),
            "conflicts": conflicts,
        }
        click.echo(json.dumps(report, indent=2))
        return
    click.echo("Plugins:")
    for info in registry.plugins:
        status = (
            f"FAILED: {info.error}"
            if info.error
            else "; ".join(f"{k}s: {', '.join(v)}" for k, v in info.provides.items())
        )
        click.echo(f"  {info.name:<24} {info.version or '-':<10} {info.origin:<12} {status}")
    for conflict in conflicts:
        click.echo(
            f"  CONFLICT: {conflict['kind']} '{conflict['name']}' is registered by {' and '.join(conflict['plugins'])}"
        )
    click.echo("Kinds of data:")
    for name in registry.names("data kind"):
        click.echo(f"  {name:<16} {registry.kind(name).description}")
    click.echo("Generators:")
    for name, row in sorted(generators.items()):
        flags = ", ".join(row["capabilities"]) or "-"
        click.echo(f"  {name:<16} {row['modality']:<6} [{flags}] {row['description']}")
    click.echo("Data sources (--data):")
    for _name, row in sorted(sources.items()):
        click.echo(f"  {row['usage']:<20} {row['modality']:<6} {row['description']}")


@cli.command()
@click.argument("name")
def schema(name: str) -> None:
    """Print the JSON schema of generator NAME's config (every knob, its default and meaning)."""
    from genloom.plugins import get_registry

    click.echo(json.dumps(get_registry().generator(name).value.Config.model_json_schema(), indent=2))


@cli.command()
@click.argument("name")
@click.option(
    "--data", "data", required=True, metavar="SOURCE", help="Data source, e.g. digits, image-folder:PATH, text:PATH."
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for the model, checkpoints and logs.",
)
@click.option("--steps", type=click.IntRange(min=1), help="Training steps (the config's 'steps').")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a config field; repeatable. See `genloom schema NAME`.",
)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option(
    "--init-from",
    "init_from",
    type=click.Path(path_type=Path),
    metavar="BASE",
    help="Start from the trained model in BASE (fine-tuning): its shape and weights carry over.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where training steps run; auto is CUDA where torch sees a GPU.",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    help="Train in N processes on this machine (torchrun, gloo on the CPU, nccl on GPUs); each takes batch_size.",
)
def train(
    name: str,
    data: str,
    out: Path,
    steps: int | None,
    settings: tuple[str, ...],
    resume: bool,
    init_from: Path | None,
    quiet: bool,
    device: str,
    nproc: int | None,
) -> None:
    """Train generator NAME on a data source; the model is saved in --out.

    Under torchrun (`torchrun --nproc_per_node=N -m genloom train ...`) every process runs this command and
    they train one model together; --nproc N starts that for you.
    """
    from genloom.api import check_training
    from genloom.api import train as train_model
    from genloom.config import parse_overrides

    overrides = parse_overrides(settings)
    if steps is not None:
        overrides["steps"] = steps
    if nproc is not None and nproc > 1:
        checked = check_training(name, data, out, resume=resume, init_from=init_from, device=device, **overrides)
        _train_in_processes(nproc, checked.name)
        return
    manifest = train_model(
        name, data, out, resume=resume, init_from=init_from, progress=not quiet, device=device, **overrides
    )
    if os.environ.get("RANK", "0") != "0":
        return
    summary = manifest.training
    figures = ", ".join(f"{k}={v:.4g}" for k, v in summary.final_metrics.items()) if summary else ""
    click.echo(
        f"trained '{name}' for {summary.steps if summary else 0} steps in {summary.seconds if summary else 0:.1f}s "
        f"({figures})"
    )
    click.echo(f"model saved in {out}")


def _train_in_processes(nproc: int, name: str) -> None:
    """Run this ``genloom train`` command again in ``nproc`` processes under torchrun; explain a failed run."""
    from genloom.launch import run_torchrun

    context = click.get_current_context()
    params = context.params
    train_args = [name, "--data", params["data"], "--out", str(params["out"]), "--device", params["device"]]
    if params["steps"] is not None:
        train_args += ["--steps", str(params["steps"])]
    for pair in params["settings"]:
        train_args += ["--set", pair]
    if params["init_from"] is not None:
        train_args += ["--init-from", str(params["init_from"])]
    train_args += ["--resume"] * params["resume"] + ["--quiet"] * params["quiet"]
    code, message = run_torchrun(nproc, train_args, params["out"])
    if message is not None:
        _fail(message, code)
    if code:
        sys.exit(code)


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option(
    "-n",
    "n",
    type=click.IntRange(min=1),
    help="How many: images (default 16), sequences per prompt, rows ... (the kind's count).",
)
@click.option("--seed", type=click.IntRange(min=0), help="Seed; the same seed gives the same output.")
@click.option("--labels", help="Comma-separated class labels (conditional image models), e.g. 0,1,2.")
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    help="Where the kind writes the result (images: a PNG grid, default generated.png; text: a file instead of "
    "stdout).",
)
@click.option(
    "--npy",
    type=click.Path(path_type=Path),
    help="Also write the result's raw float array (images: (N, H, W, C)) as .npy.",
)
@click.option("--prompt", "prompts", multiple=True, help="Text: a prompt; repeat for a batch.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), help="Text: tokens to generate at most (default 64).")
@click.option("--do-sample/--greedy", "do_sample", default=None, help="Text: sample, or decode greedily (the default).")
@click.option("--temperature", type=float, help="Text: sampling temperature (> 0).")
@click.option("--top-k", type=click.IntRange(min=1), help="Text: sample among the k most likely tokens (default 50).")
@click.option("--top-p", type=float, help="Text: nucleus sampling mass, in (0, 1].")
@click.option("--repetition-penalty", type=float, help="Text: penalty for repeated tokens (1.0: off).")
@click.option("--stop", "stop", multiple=True, help="Text: stop at this string (repeatable).")
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    metavar="COLUMN=VALUE",
    help="Tables: only rows with this value of a categorical column, e.g. species=Adelie (repeatable).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any sampling setting of the model's kind; repeatable.",
)
@click.option("--stream", is_flag=True, help="Print the output piece by piece as it is made (models that stream).")
def generate(
    model_dir: Path,
    n: int | None,
    labels: str | None,
    out: Path | None,
    npy: Path | None,
    prompts: tuple[str, ...],
    conditions: tuple[str, ...],
    settings: tuple[str, ...],
    stream: bool,
    **options: Any,
) -> None:
    """Generate from the model in MODEL_DIR and write the result as its kind does (an image grid, text on stdout,
    ...)."""
    import genloom
    from genloom.config import parse_overrides
    from genloom.plugins import get_registry

    model = genloom.load(model_dir)
    kind = get_registry().kind(model.manifest.modality)
    given = {f"--{name.replace('_', '-')}": (name, value) for name, value in options.items() if value not in (None, ())}
    if prompts:
        given["--prompt"] = ("prompt", list(prompts) if len(prompts) > 1 else prompts[0])
    if labels:
        given["--labels"] = ("labels", _parse_labels(labels))
    if conditions:
        given["--condition"] = ("conditions", _parse_conditions(conditions))
    if n:
        given["-n"] = (kind.count_field or "", n)
    fields = kind.sampling.model_fields
    for option, (field, _) in given.items():
        if field not in fields:
            raise click.UsageError(
                f"{option}: this model makes {kind.name}; its settings are {', '.join(fields)} "
                f"(set any with --set KEY=VALUE)"
            )
    request = {field: list(value) if isinstance(value, tuple) else value for field, value in given.values()}
    request.update(parse_overrides(settings))
    if stream and not model.streamable:
        raise click.UsageError(f"--stream: '{model.manifest.generator}' does not stream; leave --stream out")
    if stream and (out or npy):
        raise click.UsageError("--stream prints to stdout; leave out --out and --npy")
    target = _checked_out(kind, out)
    if npy:
        if not _has_field(kind.result, "array"):
            raise click.UsageError(f"--npy: a {kind.name} result has no array to write; leave --npy out")
        check_output_file(npy, "--npy")
    if stream:
        for piece in model.stream(**request):
            click.echo(piece, nl=False)
        click.echo()
        return
    result = model.generate(**request)
    line = kind.write(result, target)
    if line:
        click.echo(line)
    if npy:
        _write_array(result.array, npy)


def _checked_out(kind: Any, out: Path | None) -> Path | None:
    """``--out`` (or the kind's default), checked as a file or a folder before any work."""
    from genloom.fileio import check_output_directory

    target = out or (Path(kind.default_out) if kind.default_out else None)
    if target is None:
        return None
    if kind.check_out is not None:
        kind.check_out(target)
    one_file = target.suffix.lower() == kind.sample_suffix  # the form training writes its samples in
    return (
        check_output_directory(target, "--out", empty=True)
        if kind.out_is_directory and not one_file
        else check_output_file(target, "--out")
    )


def _has_field(cls: type, name: str) -> bool:
    """Whether instances of ``cls`` (a dataclass, a pydantic model or a plain class) have the attribute ``name``."""
    import dataclasses

    if dataclasses.is_dataclass(cls):
        return name in {f.name for f in dataclasses.fields(cls)}
    return name in getattr(cls, "model_fields", {}) or hasattr(cls, name)


def _write_array(array: Any, npy: Path) -> None:
    import numpy as np

    from genloom.fileio import atomic_path

    with atomic_path(npy) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array))
    click.echo(f"wrote array {np.shape(array)} to {npy}")


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(model_dir: Path, as_json: bool) -> None:
    """Describe the model in MODEL_DIR (checks every file's hash)."""
    import genloom

    details = genloom.load(model_dir).info()
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    for key in (
        "path",
        "kind",
        "generator",
        "plugin",
        "plugin_version",
        "modality",
        "backend",
        "device",
        "artifact_sha256",
    ):
        click.echo(f"{key:<16} {details[key]}")
    click.echo(f"{'config':<16} {json.dumps(details['config'])}")
    click.echo(f"{'facts':<16} {json.dumps(details['facts'])}")
    if details.get("training"):
        click.echo(f"{'training':<16} {json.dumps(details['training'])}")


@cli.command(name="eval")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--data", "data", required=True, metavar="SOURCE", help="The data source it trained on, e.g. digits.")
@click.option(
    "-n",
    "samples",
    type=click.IntRange(min=8),
    default=2000,
    show_default=True,
    help="Samples per compared set, at most (images; rows of a table).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the samples and of the real halves (the first one, with --seeds).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Evaluate at this many seeds from --seed on; print each figure's mean ± standard deviation.",
)
@click.option(
    "--report",
    "report_png",
    type=click.Path(path_type=Path),
    help="Also draw the samples beside the real data in this PNG (tables: each column, and the correlations).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def evaluate(
    model_dir: Path, data: str, samples: int, seed: int, seeds: int, report_png: Path | None, as_json: bool
) -> None:
    """Measure how good MODEL_DIR's samples are, next to real data against itself.

    Distances are taken in the features of a small classifier that genloom trains
    on the data source and caches: a domain-specific Frechet distance, not Inception FID.
    Figures are means over --seeds seeds of the samples and real halves, with their spread.
    """
    from genloom.evaluation import evaluate_model

    report = evaluate_model(model_dir, data, samples=samples, seed=seed, seeds=seeds, report_png=report_png)
    if as_json:
        click.echo(report.model_dump_json(indent=2))
        return
    seeds_used = ", ".join(str(s) for s in report.seeds)
    sets = f" ({report.samples} images per set, seeds {seeds_used})" if report.samples else ""
    click.echo(f"{report.generator} model in {report.model}, evaluated on '{report.data}'{sets}")
    if report.generated and report.real:
        cached = "cached" if report.classifier_cached else "trained now, cached"
        click.echo(
            f"features: a classifier of {report.classifier_task} on '{report.data}' ({cached}, held-out accuracy "
            f"{report.classifier_accuracy:.3f}); k={report.neighbours} for precision/recall"
        )
        click.echo(f"  {'':<26}{'model':>18}{'real vs real':>18}")
        for field in ("frechet_distance", "precision", "recall", "label_accuracy"):
            model_value, real_value = getattr(report.generated, field), getattr(report.real, field)
            if model_value is not None:
                model_cell = _with_spread(model_value, report.spread.get(f"generated.{field}"))
                real_cell = _with_spread(real_value, report.spread.get(f"real.{field}"))
                click.echo(f"  {field.replace('_', ' '):<26}{model_cell:>18}{real_cell:>18}")
        click.echo(f"  {f'images/s ({report.backend})':<26}{report.images_per_second:>18.4g}")
    for name, value in report.held_out.items():
        click.echo(f"  {'held-out ' + name:<36}{value:>10.4g}")
    for name, value in report.baselines.items():
        click.echo(f"  {'baseline ' + name:<36}{_with_spread(value, report.spread.get(f'baselines.{name}')):>10}")
    _echo_figures(report.figures, report.spread)
    if report_png is not None:
        click.echo(f"wrote the report to {report_png}")


def _echo_figures(figures: dict[str, float], spread: dict[str, float]) -> None:
    """A kind's figures; a figure ``NAME`` with a ``real_NAME`` beside it (the same figure for real data) in one row,
    under the columns 'model' and 'real'."""
    paired = [name for name in figures if f"real_{name}" in figures]
    if paired:
        click.echo(f"  {'':<26}{'model':>18}{'real':>18}")
    for name, value in figures.items():
        if name in paired:
            real = f"real_{name}"
            model_cell = _with_spread(value, spread.get(f"figures.{name}"))
            real_cell = _with_spread(figures[real], spread.get(f"figures.{real}"))
            click.echo(f"  {name.replace('_', ' '):<26}{model_cell:>18}{real_cell:>18}")
        elif not (name.startswith("real_") and name[len("real_") :] in paired):
            click.echo(f"  {name:<36}{_with_spread(value, spread.get(f'figures.{name}')):>10}")


def _with_spread(mean: float, spread: float | None) -> str:
    """``mean`` to 4 significant digits, with `` ± spread`` where it was measured over several seeds."""
    return f"{mean:.4g}" if spread is None else f"{mean:.4g} ± {spread:.2g}"


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option(
    "--out", "out", required=True, type=click.Path(path_type=Path), help="Directory for the export (must not hold one)."
)
@click.option("--opset", type=int, help="ONNX opset, 17 to 22 (the exporter's default: 20).")
@click.option(
    "--exporter", "exporter_name", help="Registered exporter to use (default: the one that makes genloom exports)."
)
@click.option("--fp16", is_flag=True, help="Also write half-precision graphs (for CUDA), with their measured error.")
@click.option(
    "--int8", is_flag=True, help="Also write graphs with int8 weights (for the CPU), with their measured error."
)
@click.option(
    "--q8",
    is_flag=True,
    help="Also write graphs with block-wise 8-bit weights (MatMulNBits; --option block_size=32), with their error "
    "and agreement with fp32.",
)
@click.option("--q4", is_flag=True, help="The same with 4-bit weights.")
@click.option(
    "--option",
    "extra_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any option of the exporter (see `genloom plugins`); repeatable.",
)
@click.option("--verbose", is_flag=True, help="When a graph cannot be exported, also print the exporters' full output.")
def export(
    model_dir: Path,
    out: Path,
    opset: int | None,
    exporter_name: str | None,
    fp16: bool,
    int8: bool,
    q8: bool,
    q4: bool,
    extra_options: tuple[str, ...],
    verbose: bool,
) -> None:
    """Export the trained model in MODEL_DIR (to ONNX by default), checking its outputs against PyTorch."""
    from genloom.errors import ExportError
    from genloom.plugins import get_registry

    exporter = get_registry().exporter(exporter_name).value
    from genloom.config import parse_overrides

    options = {
        name: value
        for name, value in (
            ("opset", opset),
            ("fp16", fp16 or None),
            ("int8", int8 or None),
            ("q8", q8 or None),
            ("q4", q4 or None),
        )
        if value is not None
    }
    options.update(parse_overrides(extra_options))
    unknown = [name for name in options if name not in exporter.options]
    if unknown:
        raise click.UsageError(
            f"--{unknown[0]}: the '{exporter.name}' exporter takes no such option (its options: "
            f"{', '.join(exporter.options) or 'none'})"
        )
    try:
        manifest = exporter.export(model_dir, out, **options)
    except ExportError as exc:
        if verbose and exc.details:
            click.echo(exc.details.rstrip("\n"), err=True)
        raise
    section = getattr(manifest, "export", None)
    if section is None:  # another target than a genloom export directory
        click.echo(f"exported '{manifest.generator}' to {out} with '{exporter.name}'")
        return
    for graph, difference in section.parity_max_abs_diff.items():
        click.echo(f"graph '{graph}': max |onnxruntime - torch| = {difference:.2e} (tolerance {section.tolerance})")
    for precision, figures in section.variants.items():
        errors = ", ".join(f"'{g}' {d:.2e}" for g, d in figures.max_abs_diff.items())
        perplexity = figures.validation_perplexity
        change = (
            f"; validation perplexity {perplexity:.4g} (fp32 {figures.validation_perplexity_fp32:.4g})"
            if perplexity
            else ""
        )
        agreement = figures.agreement_with_fp32
        same = f"; {agreement:.0%} of the variant checks equal to fp32" if agreement is not None else ""
        click.echo(f"{precision}: max |onnxruntime - torch| = {errors}{change}{same}")
    click.echo(f"exported '{manifest.generator}' to {out} (driver {section.driver}, opset {section.opset})")


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option(
    "--json", "json_out", type=click.Path(path_type=Path), help="Write every figure and the machine's description here."
)
@click.option("--chart", "chart_out", type=click.Path(path_type=Path), help="Write a PNG chart here.")
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Timed runs per figure (median reported).",
)
@click.option(
    "--tokens", type=click.IntRange(min=1), default=32, show_default=True, help="Text: tokens decoded per run."
)
@click.option(
    "--exporter", "exporter_name", help="Exporter of a trained model (default: the one that makes genloom exports)."
)
def bench(
    model_dir: Path, json_out: Path | None, chart_out: Path | None, repeats: int, tokens: int, exporter_name: str | None
) -> None:
    """Measure MODEL_DIR's throughput on every path (PyTorch, ONNX Runtime, the peer) beside this machine's roofs."""
    from genloom.bench.report import chart, table
    from genloom.bench.run import bench_artifact
    from genloom.fileio import atomic_write_text, check_output_file

    for option, target in (("--json", json_out), ("--chart", chart_out)):
        if target:
            check_output_file(target, option)  # before the benchmark, not minutes after it
    report = bench_artifact(model_dir, repeats=repeats, tokens=tokens, exporter=exporter_name)
    click.echo(table(report))
    if json_out:
        atomic_write_text(json_out, report.model_dump_json(indent=2) + "\n")
        click.echo(f"wrote {json_out}")
    if chart_out:
        click.echo(f"wrote {chart(report, chart_out)}")


def _limit_options(command: Callable[..., None]) -> Callable[..., None]:
    """One ``--max-tokens``-style option per field of :class:`genloom.serve.ServerLimits` (but the API key), with
    its default and description: the limits' one source of truth."""
    from genloom.serve.limits import ServerLimits

    for name, field in reversed(list(ServerLimits.model_fields.items())):
        if name == "api_key":
            continue
        above_zero = any(isinstance(rule, annotated_types.Gt) for rule in field.metadata)
        kind = click.IntRange(min=1) if field.annotation is int else click.FloatRange(min=0, min_open=above_zero)
        option = click.option(f"--{name.replace('_', '-')}", name, type=kind, default=field.default, show_default=True,
                              help=field.description)  # fmt: skip
        command = option(command)
    return command


@cli.command()
@click.argument("model_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--name", "names", multiple=True, help="Served name of each MODEL_DIR in turn (default: its folder name)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback unless told).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option(
    "--api-key", envvar="GENLOOM_API_KEY", help="Require 'Authorization: Bearer KEY' (or set GENLOOM_API_KEY)."
)
@click.option("--ray", "on_ray", is_flag=True, help="Run as a Ray Serve deployment on a local Ray instance.")
@click.option("--replicas", type=click.IntRange(min=1), help="Replicas of the Ray Serve deployment (with --ray).")
@_limit_options
def serve(
    model_dirs: tuple[Path, ...],
    names: tuple[str, ...],
    host: str,
    port: int,
    api_key: str | None,
    on_ray: bool,
    replicas: int | None,
    **limits: Any,
) -> None:
    """Serve exported models over HTTP: OpenAI-compatible /v1/completions for text, /v1/generate/MODEL for every
    kind, the Open Inference Protocol v2 routes and Prometheus /metrics (docs/serving.md)."""
    from genloom.install import require_ray_install, require_serving_install

    if replicas is not None and not on_ray:
        raise click.UsageError("--replicas: only with --ray (genloom serve --ray --replicas N)")
    require_serving_install()
    from genloom.serve.limits import ServerLimits

    limits_model = ServerLimits(api_key=api_key, **limits)
    if on_ray:
        require_ray_install()
        from genloom.serve.ray_serve import serve_with_ray

        serve_with_ray(list(model_dirs), names=names, host=host, port=port, limits=limits_model, replicas=replicas or 1)
        return
    from genloom.serve.server import serve as run_server

    run_server(list(model_dirs), names=names, host=host, port=port, limits=limits_model)


def _parse_labels(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers like 0,1,2, got {text!r}", param_hint="--labels"
        ) from None


def _parse_conditions(pairs: tuple[str, ...]) -> dict[str, str]:
    conditions: dict[str, str] = {}
    for pair in pairs:
        column, equals, value = (part.strip() for part in pair.partition("="))
        if not equals or not column:
            raise click.UsageError(f"--condition {pair}: write COLUMN=VALUE, e.g. species=Adelie")
        if column in conditions:
            raise click.UsageError(
                f"--condition {pair}: {column!r} is already set to {conditions[column]!r}; "
                "give each column one value (generate once per value for several)"
            )
        conditions[column] = value
    return conditions


def _generator_row(registration: Any) -> dict[str, Any]:
    cls = registration.value
    flags = [flag for flag, on in vars(cls.capabilities).items() if on]
    return {
        "modality": cls.modality,
        "capabilities": flags,
        "description": cls.description,
        "plugin": registration.plugin,
        "plugin_version": registration.plugin_version,
    }
