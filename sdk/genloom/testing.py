"""Conformance checks for plugin authors: one call in your own pytest.

::

    from genloom.testing import check_generator

    def test_my_generator_conforms(tmp_path):
        check_generator(MyGenerator, data="digits", workdir=tmp_path, steps=5)

It asserts what every generator owes its users: its config round-trips through
JSON and has a description on every field, a CPU smoke-train runs through the
shared loop, a generator trained in memory samples exactly what it samples after
save -> load (images, or texts for a batch of prompts), the same seed gives the
same result, and an export description (if any) is complete. When the generator
is exportable, every registered exporter exports it for real (with its parity
gate), and the export loads and generates without torch, matching PyTorch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import load_generator
from genloom.config import validate_model
from genloom.generator import Generator
from genloom.plugins import get_registry
from genloom.sampling import ImageSampling, TextSampling
from genloom.training import inference, train


def check_generator(generator_cls: type[Generator], data: str, workdir: str | Path, **config: Any) -> None:
    """Run every conformance check on ``generator_cls``, training on the ``data`` source in ``workdir``."""
    generator_cls.check_declaration()
    check_config(generator_cls)
    out = Path(workdir) / f"conformance-{generator_cls.name}"
    train(generator_cls, get_registry().open_data(data), out, {"steps": 2, **config}, progress=False)
    trained = load_generator(out, generator_cls=generator_cls)
    settings = _settings(generator_cls)
    first = _sample(trained, settings)
    _check_output(generator_cls, first)
    _assert_same(first, _sample(trained, settings), "the same seed gave another output")
    check_save_round_trip(generator_cls, data, Path(workdir) / f"round-trip-{generator_cls.name}", settings, **config)
    check_export_spec(trained)
    if generator_cls.capabilities.exportable:
        check_export(trained, out, Path(workdir) / f"export-{generator_cls.name}")


def check_save_round_trip(generator_cls: type[Generator], data: str, directory: Path,
                          settings: ImageSampling | TextSampling, **config: Any) -> None:
    """A generator trained in memory samples exactly what the same generator saved and loaded again samples.

    This catches state that ``save`` drops (an attribute ``fit_data`` set but
    ``facts``/``extra_files`` do not carry, a module left out of ``modules``).
    """
    import torch

    generator = generator_cls(validate_model(generator_cls.Config, {"steps": 2, **config}, what=f"config of '{generator_cls.name}'"))
    dataset, _ = get_registry().open_data(data).split(generator.config.validation_fraction)
    generator.fit_data(dataset)
    torch.manual_seed(generator.config.seed)
    generator.modules = generator.build()
    optimizers = generator.configure_optimizers()
    rng = np.random.default_rng(generator.config.seed)
    for step in range(2):
        generator.train_step(generator.get_batch(dataset, rng), optimizers, step)
    in_memory = _sample(generator, settings)
    generator.save(directory)
    _assert_same(in_memory, _sample(load_generator(directory, generator_cls=generator_cls), settings),
                 "save -> load changed the output: save() drops state the generator samples with (see facts / extra_files)")


def check_export(trained: Generator, model_dir: Path, directory: Path) -> None:
    """Every registered exporter exports the model saved in ``model_dir`` (its parity gate runs), and the export
    loads and generates in a process where torch cannot be imported, matching ``trained`` (that model, loaded)."""
    registry = get_registry()
    settings = ImageSampling(n=3, seed=7) if trained.modality == "image" else TextSampling(prompt=["", "a"], max_new_tokens=6)
    expected = _sample(trained, settings)
    for name in registry.names("exporter"):
        target = directory / name
        registry.exporter(name).value.export(model_dir, target)
        produced = _generate_without_torch(target, settings)
        if isinstance(settings, ImageSampling):
            worst = float(np.abs(produced - np.asarray(expected).transpose(0, 2, 3, 1)).max())
            assert worst <= EXPORT_TOLERANCE, f"exporter '{name}': the export's images differ from PyTorch's by {worst:.3g}"
        else:
            assert produced == expected.tokens, f"exporter '{name}': the export decodes {produced}, PyTorch {expected.tokens}"


EXPORT_TOLERANCE = 1e-4
"""Largest difference allowed between an export's images and PyTorch's (fp32)."""

_WITHOUT_TORCH = """
import json, sys
sys.modules["torch"] = None  # any import of torch now fails
import importlib, numpy as np, genloom
for module in json.loads(sys.argv[3]):
    genloom.plugins.register(importlib.import_module(module))
settings = json.loads(sys.argv[2])
result = genloom.load(sys.argv[1], providers="cpu").generate(**settings)
if hasattr(result, "array"):
    np.save(sys.argv[4], result.array)
else:
    open(sys.argv[4], "w").write(json.dumps(result.tokens))
"""


def _generate_without_torch(export_dir: Path, settings: ImageSampling | TextSampling) -> Any:
    """Load ``export_dir`` and generate in a fresh process that cannot import torch; the images or the tokens."""
    import json
    import subprocess
    import sys

    from genloom.plugins import in_process_modules

    modules = in_process_modules()
    output = export_dir.with_name(export_dir.name + (".npy" if isinstance(settings, ImageSampling) else ".json"))
    command = [sys.executable, "-c", _WITHOUT_TORCH, str(export_dir), settings.model_dump_json(), json.dumps(modules), str(output)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, f"the export does not load and generate without torch:\n{finished.stderr[-2000:]}"
    return np.load(output) if output.suffix == ".npy" else json.loads(output.read_text())


def check_config(generator_cls: type[Generator]) -> None:
    """The default config round-trips through JSON, and every field has a description."""
    config = generator_cls.Config()
    assert generator_cls.Config.model_validate_json(config.model_dump_json()) == config, "config does not round-trip through JSON"
    undocumented = [name for name, field in generator_cls.Config.model_fields.items() if not field.description]
    assert not undocumented, f"config fields without a description: {', '.join(undocumented)}"


def check_export_spec(generator: Generator) -> None:
    """If the generator declares an export, each graph names its inputs, outputs and a batch >= 2 example."""
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


def _settings(generator_cls: type[Generator]) -> ImageSampling | TextSampling:
    if generator_cls.modality == "image":
        return ImageSampling(n=3, seed=7)
    return TextSampling(prompt=["", "a"], max_new_tokens=6, do_sample=True, num_return_sequences=2, seed=7)


def _check_output(generator_cls: type[Generator], output: Any) -> None:
    if generator_cls.modality == "image":
        assert output.shape[:1] == (3,) and output.ndim == 4, f"sample() must return (N, C, H, W), got {output.shape}"
        assert output.dtype == np.float32 and 0.0 <= output.min() and output.max() <= 1.0, "images must be float32 in [0, 1]"
    else:
        assert len(output.texts) == 4 and all(isinstance(t, str) for t in output.texts), "sample() must return one text per sequence"


def _assert_same(first: Any, second: Any, message: str) -> None:
    if isinstance(first, np.ndarray):
        np.testing.assert_array_equal(first, second, err_msg=message)
    else:
        assert first.texts == second.texts, message


def _sample(generator: Generator, settings: ImageSampling | TextSampling) -> Any:
    with inference(generator):
        output = generator.sample(settings)
    return np.asarray(output) if isinstance(settings, ImageSampling) else output
