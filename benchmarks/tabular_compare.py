"""genloom's tabular generators against SDV's, on one table: quality, privacy, fit time and generation speed.

    python benchmarks/tabular_compare.py [--data penguins] [--seeds 3] [--generators ctgan,tvae,copula]
        [--no-sdv] [--json OUT.json] [--workdir DIR]

The table is split as `genloom train` and `genloom eval` split it (``data.split(0.2)``, the tabular generators'
default ``validation_fraction``: 275 training rows and 69 held-out on ``penguins``). For each generator and each
training seed S in 0..SEEDS-1:

* genloom: ``genloom.train(GENERATOR, DATA, out, seed=S)`` with the generator's defaults (the wall time of the
  call is the fit time), then as many rows as the training split from ``generate(n=..., seed=S)``;
* SDV (when ``import sdv`` works, unless ``--no-sdv``; SDV is no dependency of genloom): its counterpart
  (``GaussianCopulaSynthesizer``, ``CTGANSynthesizer``, ``TVAESynthesizer``) with default settings on metadata
  auto-detected from the same training rows, numpy, torch and ``random`` seeded with S before ``fit`` (the time
  of ``fit``), then ``sample``. SDV 2.0 seeds sampling itself (a fixed seed on the first ``sample`` after ``fit``
  or ``reset_sampling``), so its rows differ between seeds only through the fit.

Both sides are scored by one evaluation, genloom's ``table_figures`` (what `genloom eval` reports), with the
schema inferred from the training split; a first row puts the real held-out rows in the generated rows' place.
Generation speed is rows/s at 4,096 rows a call (one warm-up, the best of 5 timed calls) of each seed-0 model:
genloom through PyTorch and through ONNX Runtime (exported with `genloom export`), SDV's ``sample``.

Prints the machine and a markdown table (mean ± sd over the seeds) on stdout, progress on stderr, and with
``--json`` writes everything, per-seed values included. Models go to a temporary directory, or to ``--workdir``
(whose GENERATOR-seedS and GENERATOR-onnx folders are replaced) to keep them. For the SDV rows, install SDV in an
environment of its own beside genloom (torch first, so that pip keeps it), e.g.::

    python -m venv /tmp/sdv-venv && /tmp/sdv-venv/bin/pip install torch
    /tmp/sdv-venv/bin/pip install -e '.[train]' sdv==2.0.0
    /tmp/sdv-venv/bin/python benchmarks/tabular_compare.py --json /tmp/tabular-penguins.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

SPEED_ROWS = 4096
"""Rows a call when generation speed is measured."""
SPEED_REPEATS = 5
"""Timed calls of the speed measurement (after one warm-up call); the fastest counts."""
VALIDATION_FRACTION = 0.2
"""The tabular generators' default ``validation_fraction``: the share of rows training and `genloom eval` hold out."""
SDV_SYNTHESIZERS = {"ctgan": "CTGANSynthesizer", "tvae": "TVAESynthesizer", "copula": "GaussianCopulaSynthesizer"}
"""The SDV synthesizer (in ``sdv.single_table``) that each genloom generator is compared with."""
SDV_TABLE = "table"
"""The table's name in SDV's metadata (SDV 2.0 takes and returns ``{table name: DataFrame}``)."""
COLUMNS = (
    ("detection_logistic", "detection logistic", "{:.3f}"),
    ("detection_boosting", "detection boosting", "{:.3f}"),
    ("efficacy", "efficacy", "{:.3f}"),
    ("column_shapes", "column shapes", "{:.3f}"),
    ("pair_trends", "pair trends", "{:.3f}"),
    ("dcr_ratio", "DCR ratio", "{:.2f}"),
    ("exact_copies", "exact copies", "{:.1f}"),
    ("fit_seconds", "fit s", "{:.1f}"),
)
"""The table's figure columns: key in a run's figures, header, format of the mean and the sd."""
EFFICACY = {"efficacy_macro_f1": "macro F1", "efficacy_r2": "R²"}
"""The efficacy figure of a discrete target and of a numeric one."""
STARTED = time.perf_counter()


@dataclass
class Run:
    """One trained model (library, generator, seed): ``table_figures``' figures and the fit time (None for the
    real held-out rows)."""

    library: str
    generator: str
    seed: int
    fit_seconds: float | None
    figures: dict[str, float]


@dataclass
class Speed:
    """Generation speed of one seed-0 model on one backend: rows/s at ``rows`` rows a call, the fastest call."""

    library: str
    generator: str
    backend: str
    rows: int
    rows_per_second: float
    device: str = "cpu"


@dataclass
class Comparison:
    """Everything the benchmark measured, as ``--json`` writes it."""

    machine: dict[str, Any]
    data: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    speeds: list[Speed] = field(default_factory=list)
    table: list[dict[str, Any]] = field(default_factory=list)


def progress(message: str) -> None:
    """A progress line on stderr, with the seconds since the start."""
    print(f"[{time.perf_counter() - STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def fail(message: str) -> NoReturn:
    """One line on stderr, then exit 2: a bad argument, before any work."""
    print(f"tabular_compare: error: {message}", file=sys.stderr)
    sys.exit(2)


def sdv_version() -> str | None:
    """SDV's version when ``import sdv`` works, else None."""
    try:
        import sdv
    except ImportError:
        return None
    return str(sdv.__version__)


def genloom_source() -> dict[str, Any]:
    """Where the genloom that runs comes from: its checkout, commit and locally modified files (timings and
    figures belong to that code)."""
    import genloom

    root = Path(genloom.__file__).resolve().parents[2]  # sdk/genloom/__init__.py in a checkout

    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(root), *arguments], capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        modified = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    except (OSError, subprocess.CalledProcessError):
        return {"path": str(root), "commit": None, "modified": []}
    return {"path": str(root), "commit": commit, "modified": modified}


def machine(sdv: str | None) -> dict[str, Any]:
    """The machine and the libraries the figures come from."""
    import torch

    from genloom.bench.machine import busy_elsewhere

    versions = {}
    for name in ("genloom", "torch", "onnxruntime-gpu", "onnxruntime", "numpy", "pandas", "scikit-learn", "rdt"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "busy_elsewhere_cores": busy_elsewhere(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sdv": sdv or "not installed",
        "libraries": versions,
        "genloom_source": genloom_source(),
    }


def check_arguments(data: str, generators: list[str]) -> None:
    """An unknown data source or generator, or one that is not a table's: one line, exit 2."""
    from genloom.errors import GenloomError
    from genloom.plugins import get_registry

    registry = get_registry()
    sources = [name for name in registry.names("data source") if registry.data_source(name).value.modality == "table"]
    choices = ", ".join(f"{name}:{registry.data_source(name).value.argument}".rstrip(":") for name in sources)
    try:
        source = registry.source_for(data)
    except GenloomError:
        fail(f"--data: no data source '{data}'; the table sources are {choices}")
    if source.modality != "table":
        fail(f"--data: '{data}' holds {source.modality}, not a table; the table sources are {choices}")
    tabular = [name for name in registry.names("generator") if registry.generator(name).value.modality == "table"]
    unknown = [name for name in generators if name not in tabular]
    if unknown or not generators:
        what = f"no tabular generator '{unknown[0]}'" if unknown else "name one generator or more"
        fail(f"--generators: {what}; choose from {', '.join(tabular)}")


def fresh(directory: Path) -> Path:
    """``directory``, emptied (it is one of this benchmark's own model folders)."""
    if directory.exists():
        shutil.rmtree(directory)
    return directory


def train_genloom(generator: str, data: str, out: Path, seed: int) -> float:
    """Train ``generator`` with its defaults and training seed ``seed`` into ``out``; the wall time of the call."""
    import genloom

    started = time.perf_counter()
    genloom.train(generator, data, fresh(out), progress=False, seed=seed)
    return time.perf_counter() - started


def genloom_run(generator: str, data: Any, train: Any, held_out: Any, out: Path, seed: int) -> Run:
    """One genloom model: trained, its rows generated (as many as the training rows) and scored."""
    import genloom
    from genloom_tabular.evaluation import table_figures
    from genloom_tabular.schema import TableSchema

    seconds = train_genloom(generator, data.source, out, seed)
    model = genloom.load(out)
    synthetic = model.generate(n=len(train), seed=seed).frame
    schema = TableSchema.model_validate(model.manifest.facts["schema"])
    figures = table_figures(schema, train.frame, held_out.frame, synthetic, seed=seed)
    return Run("genloom", generator, seed, seconds, figures)


@contextmanager
def quiet_sdv() -> Iterator[None]:
    """SDV's advice to save the metadata as JSON (repeated on every synthesizer) left out of the progress lines."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*save_to_json.*")
        yield


def sdv_synthesizer(generator: str, train_frame: Any) -> Any:
    """The SDV counterpart of ``generator`` with default settings, on metadata detected from the training rows."""
    import sdv.single_table
    from sdv.metadata import Metadata

    metadata = Metadata.detect_from_dataframes({SDV_TABLE: train_frame})
    return getattr(sdv.single_table, SDV_SYNTHESIZERS[generator])(metadata)


def seed_everything(seed: int) -> None:
    """Seed the global generators SDV fits with: numpy's, torch's and Python's."""
    import numpy as np
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)
    random.seed(seed)


def sdv_sample(synthesizer: Any, rows: int) -> Any:
    """``rows`` rows from a fitted SDV synthesizer, as a DataFrame."""
    return synthesizer.sample(num_rows=rows)[SDV_TABLE]


def sdv_run(generator: str, schema: Any, train: Any, held_out: Any, seed: int) -> tuple[Run, Any]:
    """One SDV synthesizer: fit (timed) after seeding, its rows sampled and scored; the run and the synthesizer."""
    from genloom_tabular.evaluation import table_figures

    with quiet_sdv():
        synthesizer = sdv_synthesizer(generator, train.frame)
        seed_everything(seed)
        started = time.perf_counter()
        synthesizer.fit({SDV_TABLE: train.frame})
        seconds = time.perf_counter() - started
        synthesizer.reset_sampling()  # sampling from the state fit left (SDV's own fixed sampling seed)
        synthetic = sdv_sample(synthesizer, len(train))
    figures = table_figures(schema, train.frame, held_out.frame, synthetic, seed=seed)
    return Run("SDV", generator, seed, seconds, figures), synthesizer


def rows_per_second(call: Callable[[], object], rows: int) -> float:
    """``rows`` over the fastest of :data:`SPEED_REPEATS` timed calls of ``call``, after one warm-up call."""
    from genloom.bench.measure import time_call

    return rows / time_call(call, repeats=SPEED_REPEATS, warmup=1).low


def export(model_dir: Path, export_dir: Path) -> None:
    """``genloom export MODEL_DIR --out EXPORT_DIR`` with this interpreter's genloom; its output on failure."""
    done = subprocess.run(
        [sys.executable, "-m", "genloom", "export", str(model_dir), "--out", str(fresh(export_dir))],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"tabular_compare: genloom export {model_dir} failed:\n{done.stdout}{done.stderr}")


def genloom_speeds(generator: str, model_dir: Path, export_dir: Path) -> list[Speed]:
    """Rows/s of the trained model in PyTorch and of its export in ONNX Runtime."""
    import genloom

    speeds = []
    export(model_dir, export_dir)
    for backend, directory in (("torch", model_dir), ("onnxruntime", export_dir)):
        model = genloom.load(directory)
        rate = rows_per_second(lambda model=model: model.generate(n=SPEED_ROWS, seed=0), SPEED_ROWS)
        speeds.append(Speed("genloom", generator, backend, SPEED_ROWS, rate, model.device))
        progress(f"genloom {generator} {backend} ({model.device}): {rate:,.0f} rows/s")
    return speeds


def sdv_speed(generator: str, synthesizer: Any) -> Speed:
    """Rows/s of an SDV synthesizer's ``sample``."""
    with quiet_sdv():
        rate = rows_per_second(lambda: sdv_sample(synthesizer, SPEED_ROWS), SPEED_ROWS)
    progress(f"SDV {generator} sample: {rate:,.0f} rows/s")
    return Speed("SDV", generator, "sample", SPEED_ROWS, rate)


def describe(run: Run) -> str:
    """A run's main figures in one progress line."""
    shown = ("detection_boosting", "column_shapes", "dcr_ratio", *EFFICACY)
    figures = ", ".join(f"{name} {run.figures[name]:.3f}" for name in shown if name in run.figures)
    return f"{run.library} {run.generator} seed {run.seed}: fit {run.fit_seconds or 0:.1f}s; {figures}"


def real_run(runs: list[Run], seed: int) -> Run:
    """The real held-out rows scored against the training rows (the ``real_`` figures) at ``seed``."""
    from genloom_tabular.evaluation import REAL

    scored = next(run for run in runs if run.seed == seed)
    figures = {name[len(REAL) :]: value for name, value in scored.figures.items() if name.startswith(REAL)}
    figures["dcr_ratio"] = 1.0  # the held-out rows' median distance over itself
    return Run("real", "held-out vs train", seed, None, figures)


def value(run: Run, key: str) -> float | None:
    """One cell's value in one run: a figure, the efficacy figure of either kind, or the fit time."""
    if key == "fit_seconds":
        return run.fit_seconds
    if key == "efficacy":
        return next((run.figures[name] for name in EFFICACY if name in run.figures), None)
    return run.figures.get(key)


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary_row(label: str, generator: str, runs: list[Run], speeds: list[Speed]) -> dict[str, Any]:
    """A table row: mean and sd over the seeds of each column, and the rows/s of each backend."""
    row: dict[str, Any] = {"library": label, "generator": generator, "seeds": [run.seed for run in runs]}
    for key, _, _ in COLUMNS:
        values = [number for number in (value(run, key) for run in runs) if number is not None]
        row[key] = dict(zip(("mean", "sd"), mean_sd(values), strict=True)) if values else None
    for speed in speeds:
        row[f"rows_per_second_{speed.backend}"] = speed.rows_per_second
    return row


def cell(row: dict[str, Any], key: str, form: str) -> str:
    """``mean ± sd`` of one column of a summary row, or a dash."""
    found = row.get(key)
    if found is None:
        return "—"
    return f"{form.format(found['mean'])} ± {form.format(found['sd'])}"


def rate(row: dict[str, Any], *backends: str) -> str:
    """Rows/s of the first of ``backends`` the row measured, or a dash."""
    found = next((row[f"rows_per_second_{name}"] for name in backends if f"rows_per_second_{name}" in row), None)
    return "—" if found is None else f"{found:,.0f}"


def markdown(rows: list[dict[str, Any]], efficacy: str) -> str:
    """The summary rows as a markdown table."""
    headers = [
        "library",
        "generator",
        *(f"efficacy ({efficacy})" if key == "efficacy" else header for key, header, _ in COLUMNS),
        "rows/s torch (SDV: sample)",
        "rows/s ONNX Runtime",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [row["library"], row["generator"], *(cell(row, key, form) for key, _, form in COLUMNS)]
        cells += [rate(row, "torch", "sample"), rate(row, "onnxruntime")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_machine(info: dict[str, Any], data: dict[str, Any]) -> None:
    """The machine and the data, above the table."""
    libraries = info["libraries"]
    onnxruntime = libraries.get("onnxruntime-gpu") or libraries.get("onnxruntime", "not installed")
    busy = info["busy_elsewhere_cores"]
    print(
        f"machine: {info['cpus']} CPUs ({info['cpus_usable']} usable, torch threads {info['torch_threads']}, "
        f"busy elsewhere {'?' if busy is None else f'{busy:.1f}'} cores), {info['platform']}, "
        f"Python {info['python']}"
    )
    source = info["genloom_source"]
    commit = f" at {source['commit'][:7]}" if source["commit"] else ""
    modified = f" with {len(source['modified'])} modified files" if source["modified"] else ""
    print(f"genloom: {source['path']}{commit}{modified}")
    print(
        f"libraries: genloom {libraries.get('genloom', '?')}, torch {libraries.get('torch', '?')}, "
        f"sdv {info['sdv']}, onnxruntime {onnxruntime}, scikit-learn {libraries.get('scikit-learn', '?')}"
    )
    print(
        f"data: {data['source']} ({data['train_rows']} training rows, {data['held_out_rows']} held out; "
        f"target {data['target']}); seeds {data['seeds']}; speed at {SPEED_ROWS:,} rows a call, best of "
        f"{SPEED_REPEATS}\n"
    )


def open_table(spec: str) -> tuple[Any, Any, Any, Any]:
    """The data source, split as training and `genloom eval` split it, and the schema of its training rows."""
    from genloom.errors import GenloomError
    from genloom.plugins import get_registry
    from genloom_tabular.schema import infer_schema

    try:
        data = get_registry().open_data(spec)
    except GenloomError as error:
        fail(f"--data: {error}")
    train, held_out = data.split(VALIDATION_FRACTION)
    if held_out is None:
        fail(f"--data: '{spec}' has too few rows ({len(data)}) to hold {VALIDATION_FRACTION:.0%} of them out")
    return data, train, held_out, infer_schema(train.frame, source=train.source, target=data.target)


def compare(
    generators: list[str],
    seeds: list[int],
    tables: tuple[Any, Any, Any, Any],
    workdir: Path,
    result: Comparison,
    *,
    sdv: bool,
) -> None:
    """Train, score and time every (library, generator, seed) into ``result`` (SDV's too with ``sdv``), then its
    summary table."""
    data, train, held_out, schema = tables
    for generator in generators:
        for seed in seeds:
            out = workdir / f"{generator}-seed{seed}"
            result.runs.append(genloom_run(generator, data, train, held_out, out, seed))
            progress(describe(result.runs[-1]))
        result.speeds += genloom_speeds(generator, workdir / f"{generator}-seed0", workdir / f"{generator}-onnx")
        if sdv:
            synthesizers = []
            for seed in seeds:
                run, synthesizer = sdv_run(generator, schema, train, held_out, seed)
                result.runs.append(run)
                synthesizers.append(synthesizer)
                progress(describe(run))
            result.speeds.append(sdv_speed(generator, synthesizers[0]))
    result.table.append(summary_row("real held-out vs real train", "—", [real_run(result.runs, s) for s in seeds], []))
    for generator in generators:
        for library in ("genloom", *(["SDV"] if sdv else [])):
            runs = [run for run in result.runs if (run.library, run.generator) == (library, generator)]
            speeds = [speed for speed in result.speeds if (speed.library, speed.generator) == (library, generator)]
            result.table.append(summary_row(library, generator, runs, speeds))


def parse_arguments() -> tuple[argparse.Namespace, list[str]]:
    """The command line, checked: an unknown data source or generator is one line and exit 2."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="penguins", help="A table data source (default: penguins).")
    parser.add_argument("--seeds", type=int, default=3, help="Training seeds 0..SEEDS-1 (default: 3).")
    parser.add_argument("--generators", default="ctgan,tvae,copula", help="genloom generators, comma-separated.")
    parser.add_argument("--no-sdv", action="store_true", help="Leave SDV out even when it is installed.")
    parser.add_argument("--json", type=Path, help="Write every figure, per seed too, to this file.")
    parser.add_argument("--workdir", type=Path, help="Keep the models here (default: a temporary directory).")
    args = parser.parse_args()
    if args.seeds < 1:
        fail(f"--seeds: give 1 or more, not {args.seeds}")
    generators = [name.strip() for name in args.generators.split(",") if name.strip()]
    check_arguments(args.data, generators)
    return args, generators


def efficacy_name(schema: Any) -> str:
    """What the efficacy column holds: macro F1 for a discrete target, R² for a numeric one."""
    if schema.target is None:
        return "no target"
    return EFFICACY["efficacy_macro_f1" if schema.column(schema.target).discrete else "efficacy_r2"]


def main() -> int:
    args, generators = parse_arguments()
    installed = sdv_version()
    sdv = installed is not None and not args.no_sdv
    if installed is None and not args.no_sdv:
        progress("sdv is not installed (pip install sdv, outside genloom's environment): genloom rows only")
    tables = open_table(args.data)
    data, train, held_out, schema = tables
    seeds = list(range(args.seeds))
    facts = {"source": data.source, "train_rows": len(train), "held_out_rows": len(held_out), "target": data.target}
    result = Comparison(
        machine(installed),
        {**facts, "seeds": seeds, "validation_fraction": VALIDATION_FRACTION, "generators": generators, "sdv": sdv},
    )
    print_machine(result.machine, result.data)
    with tempfile.TemporaryDirectory(prefix="tabular-compare-") as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        compare(generators, seeds, tables, workdir, result, sdv=sdv)
    print(markdown(result.table, efficacy_name(schema)), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
        progress(f"wrote {args.json}")
    progress(f"done in {time.perf_counter() - STARTED:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
