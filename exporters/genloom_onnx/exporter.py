"""Torch generator -> ONNX export directory, with its parity against PyTorch measured, not assumed.

Each graph of the generator's :class:`genloom.ExportSpec` is exported with a
dynamic batch, checked with ``onnx.checker``, stamped with the essential manifest
fields in its metadata, and run with ONNX Runtime on fresh random inputs at batch
1 and 3 beside PyTorch. Differences above ``FP32_TOLERANCE`` fail the export with
the figures, and nothing is written. The directory appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import genloom
from genloom.artifacts import MANIFEST_FILE, Manifest, artifact_id, write_artifact
from genloom.errors import ArtifactError, ConfigError, GenloomError
from genloom.fileio import DIRECTORY_MODE, atomic_write_text

FP32_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 3)
DEFAULT_OPSET = 20
"""The first opset with a ``Gelu`` operator, which ONNX Runtime runs as one fused kernel."""
NO_HALF_PRECISION = {"LSTM", "GRU", "RNN"}
"""Operators whose half-precision sessions ONNX Runtime cannot run (measured: the LSTM crashes on creation)."""


class ParityError(GenloomError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""


class OnnxExporter:
    """The ``onnx`` exporter: ``export(model_dir, out_dir, opset=20)``."""

    name = "onnx"

    def export(self, model_dir: str | Path, out_dir: str | Path, opset: int = DEFAULT_OPSET, *,
               fp16: bool = False, int8: bool = False) -> Manifest:
        """Export the torch model in ``model_dir`` to ``out_dir``; returns the export's manifest.

        ``fp16`` (weights and activations in half precision, inputs and outputs fp32) and
        ``int8`` (dynamically quantized weights) add variants of every graph, with their
        measured error (and, for text, the validation perplexity of each precision).
        """
        from genloom.artifacts import load_generator, read_manifest

        source, out = Path(model_dir), Path(out_dir)
        if not 17 <= opset <= 22:
            raise ConfigError(f"opset: {opset} is not supported; use 17 to 22 (default {DEFAULT_OPSET})")
        if (out / "manifest.json").exists():
            raise ArtifactError(f"'{out}' already holds an artifact; choose a new --out")
        manifest = read_manifest(source)
        generator = load_generator(source, manifest)
        spec = generator.export_spec()
        if spec is None:
            raise ConfigError(f"'{generator.name}' does not describe an ONNX export (its export_spec() is None)")
        stamp = {"genloom.generator": generator.name, "genloom.plugin": manifest.plugin, "genloom.driver": spec.driver,
                 "genloom.source_sha256": artifact_id(source), "genloom.modality": generator.modality,
                 "genloom.tokenizer": spec.driver_options.get("tokenizer", "")}
        files: dict[str, bytes] = {}
        graphs, parity = [], {}
        variant_error: dict[str, dict[str, float]] = {"fp16": {}, "int8": {}}
        with tempfile.TemporaryDirectory() as scratch:
            for graph in spec.graphs:
                path = Path(scratch) / f"{graph.name}.onnx"
                _export_graph(graph, path, opset)
                _stamp(path, {**stamp, "genloom.graph": graph.name}, graph.dynamic_axes)
                classes = int(manifest.facts.get("num_classes") or 1)
                parity[graph.name] = _check_parity(graph, path, classes)
                files[path.name] = path.read_bytes()
                entry = {"name": graph.name, "file": path.name, "inputs": graph.input_names, "outputs": graph.output_names, "variants": {}}
                for precision in [p for p, wanted in (("fp16", fp16), ("int8", int8)) if wanted]:
                    variant = _make_variant(path, precision)
                    _stamp(variant, {"genloom.precision": precision}, {})
                    variant_error[precision][graph.name] = _max_difference(graph, variant, classes)
                    files[variant.name] = variant.read_bytes()
                    entry["variants"][precision] = variant.name
                graphs.append(entry)
        files.update({name: (source / name).read_bytes() for name in manifest.files if name.endswith(".json")})
        export = {"driver": spec.driver, "driver_options": spec.driver_options, "opset": opset, "graphs": graphs,
                  "parity_max_abs_diff": parity, "tolerance": FP32_TOLERANCE, "precision": "fp32",
                  "source_sha256": stamp["genloom.source_sha256"],
                  "variants": {p: {"max_abs_diff": errors} for p, errors in variant_error.items() if errors}}

        def verify(staging: Path) -> None:
            _check_end_to_end(source, staging)
            if generator.modality == "text" and export["variants"]:
                _record_perplexities(staging, manifest, export)

        return _write_directory(out, files, manifest, export, verify)


def _export_graph(graph: genloom.GraphSpec, path: Path, opset: int) -> None:
    """torch.export-based exporter first; the TorchScript one for graphs it cannot capture."""
    import torch

    graph.module.eval()
    arguments = {"input_names": graph.input_names, "output_names": graph.output_names, "dynamic_axes": graph.dynamic_axes,
                 "opset_version": opset}
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        quiet.setLevel(logging.ERROR)  # the exporter's progress and its notes about torchvision
        try:
            torch.onnx.export(graph.module, graph.example_inputs, str(path), dynamo=True, verbose=False,
                              dynamic_shapes=_dynamic_shapes(graph), **{k: v for k, v in arguments.items() if k != "dynamic_axes"})
        except Exception:  # noqa: BLE001 - any capture failure: the older exporter may still manage
            torch.onnx.export(graph.module, graph.example_inputs, str(path), dynamo=False, **arguments)
        finally:
            quiet.setLevel(level)
    graph.module.eval()  # the exporter may hand back a module in training mode
    import onnx

    model = onnx.load(str(path))
    if _store_weights_transposed(model):
        onnx.save(model, str(path))
    onnx.checker.check_model(model, full_check=True)


def _store_weights_transposed(model: Any) -> bool:
    """Replace each ``Transpose`` of a weight by the transposed weight.

    The torch.export-based exporter writes ``nn.Linear`` as ``MatMul(x, Transpose(W))``.
    ONNX Runtime folds that when it opens an fp32 graph, but the int8 quantizer only
    quantizes a MatMul whose weight is an initializer (measured: GPT-2 small's output
    head stayed fp32 and was dequantized on every step, making int8 slower than fp32).
    Changes ``model`` (an ``onnx.ModelProto``) in place; returns whether there was anything to fold.
    """
    from onnx import numpy_helper

    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    folded = [node for node in model.graph.node if node.op_type == "Transpose" and node.input[0] in weights]
    if not folded:
        return False
    for node in folded:
        permutation = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        array = numpy_helper.to_array(weights[node.input[0]])
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array.transpose(permutation)), node.output[0]))
        model.graph.node.remove(node)
    used = {name for node in model.graph.node for name in node.input} | {value.name for value in model.graph.output}
    for tensor in [t for t in model.graph.initializer if t.name not in used]:
        model.graph.initializer.remove(tensor)
    return True


def _dynamic_shapes(graph: genloom.GraphSpec) -> tuple[Any, ...]:
    """The graph's dynamic input axes in torch.export's form: one entry per argument of ``forward``,
    a tuple for a ``*args`` parameter (e.g. a KV cache passed as ``*past``)."""
    import inspect

    from torch.export import Dim

    per_input = [{axis: Dim.DYNAMIC for axis in graph.dynamic_axes.get(name, {})} or None for name in graph.input_names]
    shapes: list[Any] = []
    for parameter in inspect.signature(graph.module.forward).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            shapes.append(tuple(per_input[len(shapes):]))
            break
        if len(shapes) < len(per_input):
            shapes.append(per_input[len(shapes)])
    return tuple(shapes)


def _stamp(path: Path, fields: dict[str, str], dynamic_axes: dict[str, dict[int, str]]) -> None:
    """Write ``fields`` into the model's metadata, and name every dynamic axis in its input and output shapes
    (an exporter may have left the traced size there, which ONNX Runtime then warns about on every run)."""
    import onnx

    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        for axis, name in dynamic_axes.get(value.name, {}).items():
            dimension = value.type.tensor_type.shape.dim[axis]
            dimension.ClearField("dim_value")
            dimension.dim_param = name
    for key, value in fields.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def _random_inputs(graph: genloom.GraphSpec, batch: int, rng: np.random.Generator, classes: int) -> list[np.ndarray]:
    if graph.sample_inputs is not None:
        return list(graph.sample_inputs(batch, rng))
    inputs = []
    for example in graph.example_inputs:
        shape = (batch, *example.shape[1:])
        if example.dtype.is_floating_point:
            inputs.append(rng.random(shape, dtype=np.float32) if example.dim() == 4 else rng.standard_normal(shape, dtype=np.float32))
        else:  # integer inputs are class labels
            inputs.append(rng.integers(0, classes, size=shape, dtype=np.int64))
    return inputs


def _make_variant(path: Path, precision: str) -> Path:
    """``NAME.fp16.onnx`` (half precision inside, fp32 inputs and outputs) or ``NAME.int8.onnx`` (int8 weights)."""
    import onnx

    variant = path.with_name(f"{path.stem}.{precision}.onnx")
    root, level = logging.getLogger(), logging.getLogger().level
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)  # the quantizer's advice about pre-processing goes to the root logger
        try:
            if precision == "fp16":
                from onnxruntime.transformers.float16 import convert_float_to_float16

                model = onnx.load(str(path))
                recurrent = sorted({node.op_type for node in model.graph.node} & NO_HALF_PRECISION)
                if recurrent:
                    raise ConfigError(f"--fp16: ONNX Runtime cannot run this graph's {', '.join(recurrent)} in half precision "
                                      "(its session crashes); export it in fp32, with --int8 if you want smaller weights")
                onnx.save(convert_float_to_float16(model, keep_io_types=True), str(variant))
            else:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                bare = onnx.load(str(path))
                del bare.graph.value_info[:]  # exporters' intermediate shapes can disagree with the quantizer's inference
                onnx.save(bare, str(variant))
                quantize_dynamic(str(variant), str(variant), weight_type=QuantType.QInt8)
        except GenloomError:
            raise
        except Exception as exc:  # noqa: BLE001 - the converters raise anything; say which graph and precision failed
            raise ParityError(f"could not make the {precision} variant of '{path.stem}': {exc}; export without --{precision}") from None
        finally:
            root.setLevel(level)
    return variant


def _record_perplexities(staging: Path, source: Manifest, export: dict[str, Any]) -> None:
    """Add to ``export`` the validation perplexity of each precision, on the held-out split of the data the model
    trained on (when that data is at hand)."""
    from genloom.plugins import get_registry

    if source.training is None:
        return
    try:
        data = get_registry().open_data(source.training.data)
    except GenloomError:
        return  # the training data is not here any more: the error figures stand alone
    _, validation = data.split(float(source.config.get("validation_fraction", 0.1)))
    if validation is None:
        return
    fp32 = genloom.load(staging, providers="cpu").perplexity(validation.text)
    for precision, figures in export["variants"].items():
        figures["validation_perplexity"] = genloom.load(staging, providers="cpu", precision=precision).perplexity(validation.text)
        figures["validation_perplexity_fp32"] = fp32


def _check_parity(graph: genloom.GraphSpec, path: Path, classes: int) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) and PyTorch; fails above the fp32 tolerance."""
    worst = _max_difference(graph, path, classes)
    if worst > FP32_TOLERANCE:
        raise ParityError(f"graph '{graph.name}': ONNX Runtime differs from PyTorch by up to {worst:.3g} (tolerance {FP32_TOLERANCE}); nothing was written")
    return worst


def _max_difference(graph: genloom.GraphSpec, path: Path, classes: int) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) and PyTorch over fresh inputs at batch 1 and 3."""
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    rng, worst = np.random.default_rng(), 0.0
    for batch in PARITY_BATCHES:
        inputs = _random_inputs(graph, batch, rng, classes)
        with torch.no_grad():
            expected = graph.module(*(torch.from_numpy(x) for x in inputs))
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        actual = session.run(graph.output_names, dict(zip(graph.input_names, inputs)))
        for name, want, got in zip(graph.output_names, expected, actual):
            if got.shape != tuple(want.shape):
                raise ParityError(f"graph '{graph.name}' output '{name}': ONNX shape {got.shape} at batch {batch}, PyTorch {tuple(want.shape)}")
            worst = max(worst, float(np.abs(got.astype(np.float32) - want.numpy()).max()))
    return worst


def _check_end_to_end(source: Path, staging: Path) -> None:
    """The public calls agree: the runtime, on the written export, generates what the torch model generates."""
    torch_model, onnx_model = genloom.load(source), genloom.load(staging, providers="cpu")
    if torch_model.generator.modality == "text":
        prompts = ["The", "A somewhat longer prompt"] if not torch_model.generator.prepend_end_of_text else ["", "The", "A longer prompt"]
        want, got = (m.generate(prompt=prompts, max_new_tokens=8).tokens for m in (torch_model, onnx_model))
        if want != got:
            raise ParityError(f"greedy decoding through the export gives {got}, PyTorch {want}; nothing was written")
        return
    labels = {"labels": [0, 1, 2]} if torch_model.generator.capabilities.conditional else {}
    want, got = (m.generate(n=3, seed=0, **labels).array for m in (torch_model, onnx_model))
    if np.abs(want - got).max() > FP32_TOLERANCE:
        raise ParityError(f"generate() through the export differs from PyTorch by {np.abs(want - got).max():.3g}; nothing was written")


def _write_directory(out: Path, files: dict[str, bytes], source: Manifest, export: dict[str, Any],
                     verify: Callable[[Path], None]) -> Manifest:
    """Write everything into a sibling temp directory, ``verify`` it, then rename it into place: whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        manifest = write_artifact(
            staging, files, kind="export", generator=source.generator, plugin=source.plugin, plugin_version=source.plugin_version,
            modality=source.modality, config=source.config, facts=source.facts, training=source.training, export=export,
        )
        verify(staging)  # may add measured figures to ``export``
        manifest = manifest.model_copy(update={"export": export})
        atomic_write_text(staging / MANIFEST_FILE, manifest.model_dump_json(indent=2) + "\n")
        staging.chmod(DIRECTORY_MODE)  # mkdtemp makes it private
        if out.exists():
            out.rmdir()  # an empty folder the user made; anything in it stops the rename below
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
