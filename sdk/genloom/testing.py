"""Conformance checks for plugin authors: one call in your own pytest.

::

    from genloom.testing import check_generator

    def test_my_generator_conforms(tmp_path):
        check_generator(MyGenerator, data="digits", workdir=tmp_path, steps=5)

It asserts what every generator owes its users: its config round-trips through
JSON and has a description on every field, a CPU smoke-train runs through the
shared loop, save -> load -> sample gives identical output (images, or texts for a
batch of prompts), the same seed gives the same result, and an export
description (if any) is complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genloom.artifacts import load_generator
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
    reloaded = load_generator(out, generator_cls=generator_cls)
    if generator_cls.modality == "image":
        first, second = (_sample(g, ImageSampling(n=3, seed=7)) for g in (trained, reloaded))
        assert first.shape[:1] == (3,) and first.ndim == 4, f"sample() must return (N, C, H, W), got {first.shape}"
        assert first.dtype == np.float32 and 0.0 <= first.min() and first.max() <= 1.0, "images must be float32 in [0, 1]"
        np.testing.assert_array_equal(first, second, err_msg="save -> load -> sample changed the output")
        np.testing.assert_array_equal(first, _sample(trained, ImageSampling(n=3, seed=7)), err_msg="same seed, other output")
    else:
        settings = TextSampling(prompt=["", "a"], max_new_tokens=6, do_sample=True, num_return_sequences=2, seed=7)
        first, second = (_sample(g, settings) for g in (trained, reloaded))
        assert len(first.texts) == 4 and all(isinstance(t, str) for t in first.texts), "sample() must return one text per sequence"
        assert first.texts == second.texts, "save -> load -> sample changed the output"
        assert first.texts == _sample(trained, settings).texts, "same seed, other output"
    check_export_spec(trained)


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


def _sample(generator: Generator, settings: ImageSampling | TextSampling) -> Any:
    with inference(generator):
        output = generator.sample(settings)
    return np.asarray(output) if isinstance(settings, ImageSampling) else output
