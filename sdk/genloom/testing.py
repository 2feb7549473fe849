"""Conformance checks for plugin authors: one call in your own pytest.

::

    from genloom.testing import check_generator

    def test_my_generator_conforms(tmp_path):
        check_generator(MyGenerator, data="digits", workdir=tmp_path, steps=5)

It asserts what every generator owes its users: its config round-trips through
JSON and has a description on every field, a CPU smoke-train runs through the
shared loop, in one process and in two (torchrun, gloo: the ranks end with identical
parameters, and the model they saved loads), a generator trained in memory samples exactly what it samples after
save -> load, the same seed gives the same result, a run started from the trained model (``--init-from``) keeps its
shape and names it (or is refused in one line), and an export description (if
any) is complete and fits its runtime driver. When the generator is exportable,
every installed exporter that makes genloom exports exports it for real (with its
parity gate), and the export loads and generates in a process where torch cannot
be imported, matching PyTorch. Results are made and compared by the generator's
kind of data (:class:`genloom.kinds.DataKind`), so a generator of a plugin's own
kind is checked like the built-in ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import UNREGISTERED, load_generator, save_generator
from genloom.config import validate_model
from genloom.contracts import EXPORT_DIRECTORY
from genloom.contracts import check_export_spec as check_spec_fits_driver
from genloom.generator import AnyGenerator, inference
from genloom.kinds import DataKind
from genloom.plugins import get_registry
from genloom.results import Provenance
from genloom.testing_ddp import check_distributed_training
from genloom.training import train

EXPORT_TOLERANCE = 1e-4
"""Largest difference allowed between an export's result and PyTorch's (fp32), as the kind compares them."""


def check_generator(
    generator_cls: type[AnyGenerator],
    data: str,
    workdir: str | Path,
    *,
    settings: Mapping[str, Any] | None = None,
    **config: Any,
) -> None:
    """Run every conformance check on ``generator_cls``, training on the ``data`` source in ``workdir``.

    ``settings`` are the sampling settings of the same-seed and save -> load checks (default: the kind's
    ``check_settings``; seed them, and sample, to check that a seed reproduces); the export is compared with
    PyTorch on the kind's ``check_settings``.
    """
    generator_cls.check_declaration()
    check_config(generator_cls)
    registry = get_registry()
    kind = registry.kind(generator_cls.modality)
    registration = registry.registration_of("generator", generator_cls)
    plugin, version = (registration.plugin, registration.plugin_version) if registration else (UNREGISTERED, "")
    request = validate_model(kind.sampling, dict(settings or kind.check_settings), what="conformance settings")
    source = registry.source_for(data)
    assert source.modality == kind.name, f"data source '{source.name}' holds {source.modality}, not {kind.name}"
    out = Path(workdir) / f"conformance-{generator_cls.name}"
    train(
        generator_cls,
        registry.open_data(data),
        out,
        {"steps": 2, **config},
        kind=kind,
        plugin=plugin,
        plugin_version=version,
        progress=False,
    )
    trained = load_generator(out, generator_cls)
    first = _sample(trained, kind, request)
    assert isinstance(first, kind.result), (
        f"sample() gave {type(first).__name__} through make_result, not a {kind.result.__name__}"
    )
    assert kind.compare(first, _sample(trained, kind, request)) == 0.0, "the same seed gave another output"
    check_save_round_trip(
        generator_cls, kind, data, Path(workdir) / f"round-trip-{generator_cls.name}", request, **config
    )
    check_fine_tune(
        generator_cls, kind, data, out, Path(workdir) / f"fine-tune-{generator_cls.name}", request, **config
    )
    check_export_spec(trained)
    if generator_cls.capabilities.exportable:
        check_export(
            trained,
            kind,
            out,
            Path(workdir) / f"export-{generator_cls.name}",
            validate_model(kind.sampling, dict(kind.check_settings), what="the kind's check settings"),
        )
    check_distributed_training(generator_cls, data, Path(workdir), **config)


def check_save_round_trip(
    generator_cls: type[AnyGenerator], kind: DataKind, data: str, directory: Path, settings: Any, **config: Any
) -> None:
    """A generator trained in memory samples exactly what the same generator saved and loaded again samples.

    This catches state that saving drops (an attribute ``fit_data`` set but
    ``facts``/``extra_files`` do not carry, a module left out of ``modules``).
    """
    import torch

    generator = generator_cls(
        validate_model(generator_cls.Config, {"steps": 2, **config}, what=f"config of '{generator_cls.name}'")
    )
    dataset, _ = get_registry().open_data(data).split(generator.config.validation_fraction)
    generator.fit_data(dataset)
    torch.manual_seed(generator.config.seed)
    generator.modules = generator.build()
    optimizers = generator.configure_optimizers()
    rng = np.random.default_rng(generator.config.seed)
    for step in range(2):
        generator.train_step(generator.get_batch(dataset, rng), optimizers, step)
    in_memory = _sample(generator, kind, settings)
    save_generator(generator, directory, UNREGISTERED, "")
    reloaded = _sample(load_generator(directory, generator_cls), kind, settings)
    assert kind.compare(in_memory, reloaded) == 0.0, (
        "save -> load changed the output: saving drops state the generator samples with (see facts / extra_files)"
    )


def check_fine_tune(
    generator_cls: type[AnyGenerator],
    kind: DataKind,
    data: str,
    base_dir: Path,
    out: Path,
    settings: Any,
    **config: Any,
) -> None:
    """A one-step run that starts from the model in ``base_dir`` (``--init-from``) keeps the base's
    ``fixed_fields``, names the base in its manifest, and samples; or the generator refuses fine-tuning with one
    clear error that names --init-from (a model that learns nothing by training steps)."""
    from genloom.artifacts import artifact_id, read_manifest
    from genloom.errors import GenloomError

    training_knobs = {key: value for key, value in config.items() if key not in generator_cls.fixed_fields}
    try:
        manifest = train(
            generator_cls,
            get_registry().open_data(data),
            out,
            {**training_knobs, "steps": 1},
            kind=kind,
            init_from=base_dir,
            progress=False,
        )
    except GenloomError as exc:
        assert "--init-from" in str(exc) and "\n" not in str(exc), f"fine-tuning failed: {exc}"
        return
    base = read_manifest(base_dir)
    assert manifest.training is not None and manifest.training.base is not None, "the manifest names no base"
    assert manifest.training.base.artifact_sha256 == artifact_id(base_dir), "the manifest names another base"
    for field in generator_cls.fixed_fields:
        assert manifest.config[field] == base.config[field], f"fixed field '{field}' did not come from the base"
    tuned = load_generator(out, generator_cls)
    assert isinstance(_sample(tuned, kind, settings), kind.result), "a fine-tuned model does not sample"


def check_export(trained: AnyGenerator, kind: DataKind, model_dir: Path, directory: Path, settings: Any) -> None:
    """Every installed exporter that makes genloom exports exports the model saved in ``model_dir`` (its parity gate
    runs), and the export loads and generates in a process where torch cannot be imported, matching ``trained``."""
    registry = get_registry()
    expected = kind.to_json(_sample(trained, kind, settings))
    for registration in registry.qualified.get("exporter", {}).values():
        if registration.value.produces != EXPORT_DIRECTORY:
            continue
        target = directory / registration.name
        registration.value.export(model_dir, target)
        produced = _generate_without_torch(target, settings)
        worst = json_difference(expected, produced)
        assert worst <= EXPORT_TOLERANCE, (
            f"exporter '{registration.name}': the export's result differs from PyTorch's by {worst:.3g}"
        )


def json_difference(first: Any, second: Any) -> float:
    """The largest difference between two JSON forms: numbers by absolute difference, anything else equal or not
    (inf)."""
    if isinstance(first, bool) or isinstance(second, bool) or isinstance(first, str) or isinstance(second, str):
        return 0.0 if first == second else float("inf")
    if isinstance(first, (int, float)) and isinstance(second, (int, float)):
        return abs(float(first) - float(second))
    if isinstance(first, dict) and isinstance(second, dict):
        if first.keys() != second.keys():
            return float("inf")
        return max((json_difference(first[key], second[key]) for key in first), default=0.0)
    if isinstance(first, list) and isinstance(second, list):
        if len(first) != len(second):
            return float("inf")
        return max((json_difference(a, b) for a, b in zip(first, second, strict=True)), default=0.0)
    return 0.0 if first == second else float("inf")


_WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None  # any import of torch now fails
import importlib, genloom
for module in json.loads(sys.argv[3]):
    genloom.plugins.register(importlib.import_module(module))
model = genloom.load(sys.argv[1], providers="cpu")
kind = genloom.plugins.get_registry().kind(model.manifest.modality)
result = model.generate(**json.loads(sys.argv[2]))
open(sys.argv[4], "w").write(json.dumps(kind.to_json(result)))
"""


def _generate_without_torch(export_dir: Path, settings: Any) -> Any:
    """Load ``export_dir`` and generate in a fresh process that cannot import torch; the result's JSON form."""
    import subprocess
    import sys

    from genloom.plugins import in_process_modules

    output = export_dir.with_name(export_dir.name + ".json")
    command = [
        sys.executable,
        "-c",
        _WITHOUT_TORCH,
        str(export_dir),
        settings.model_dump_json(),
        json.dumps(in_process_modules()),
        str(output),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, f"the export does not load and generate without torch:\n{finished.stderr[-2000:]}"
    return json.loads(output.read_text())


def check_config(generator_cls: type[AnyGenerator]) -> None:
    """The default config round-trips through JSON, and every field has a description."""
    config = generator_cls.Config()
    assert generator_cls.Config.model_validate_json(config.model_dump_json()) == config, (
        "config does not round-trip through JSON"
    )
    undocumented = [name for name, field in generator_cls.Config.model_fields.items() if not field.description]
    assert not undocumented, f"config fields without a description: {', '.join(undocumented)}"


def check_export_spec(generator: AnyGenerator) -> None:
    """If the generator declares an export, each graph names its inputs, outputs and a batch >= 2 example, and the
    description has what its runtime driver needs."""
    spec = generator.export_spec()
    assert (spec is not None) == generator.capabilities.exportable, "capabilities.exportable must match export_spec()"
    if spec is None:
        return
    assert spec.driver and spec.graphs, "an export needs a runtime driver and at least one graph"
    for graph in spec.graphs:
        assert len(graph.example_inputs) == len(graph.input_names), f"graph '{graph.name}': one name per example input"
        assert graph.output_names, f"graph '{graph.name}' names no outputs"
        assert all(len(x) >= 2 for x in graph.example_inputs), f"graph '{graph.name}': example batch must be >= 2"
        unknown = set(graph.dynamic_axes) - set(graph.input_names) - set(graph.output_names)
        assert not unknown, f"graph '{graph.name}': dynamic axes for unknown names {sorted(unknown)}"
    check_spec_fits_driver(spec, get_registry().runtime_driver(spec.driver).value, generator.name, generator.modality)


def _sample(generator: AnyGenerator, kind: DataKind, settings: Any) -> Any:
    """The generator's output for ``settings`` as the kind's result."""
    generator.check_request(settings)
    with inference(generator):
        output = generator.sample(settings)
    return kind.make_result(output, Provenance.unsaved(generator.name, settings))
