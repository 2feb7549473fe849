"""Torch generator -> ONNX export directory, with its parity against PyTorch measured, not assumed.

Each graph of the generator's :class:`genloom.ExportSpec` is written with a
dynamic batch (by the plugin where it builds the graph itself; else by the
torch.export-based exporter, the TorchScript one where it cannot, with the reason
recorded), checked with ``onnx.checker``, stamped with the
essential manifest fields in its metadata, and run with ONNX Runtime on seeded
random inputs at batch 1 and 3 beside PyTorch. Differences above
``FP32_TOLERANCE`` fail the export with the figures, and nothing is written. The
directory appears whole or not at all: it is written and checked in a staging
directory that loaders refuse, then renamed into place.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

import genloom
from genloom.api import open_export
from genloom.artifacts import (
    MANIFEST_FILE,
    UNFINISHED_MARKER,
    WEIGHTS_FILE,
    ExportSection,
    Manifest,
    artifact_id,
    read_manifest,
    write_artifact,
)
from genloom.contracts import EXPORT_DIRECTORY, check_export_spec
from genloom.errors import ArtifactError, ConfigError, ExportError, GenloomError
from genloom.fileio import DIRECTORY_MODE, atomic_write_text, check_output_directory
from genloom.model import LoadedModel, TorchModel
from genloom.plugins import get_registry
from genloom.runtime.graphfile import external_data_locations

FP32_TOLERANCE = 1e-4
PARITY_BATCHES = (1, 3)
PARITY_SEED = 0
"""Seed of the parity gate's random inputs, so an export's measured figures reproduce."""
DEFAULT_OPSET = 20
"""The first opset with a ``Gelu`` operator, which ONNX Runtime runs as one fused kernel."""
BLOCK_BITS = {"q8": 8, "q4": 4}
"""The block-wise weight-only variants and their bits."""
DEFAULT_BLOCK_SIZE = 32
"""Weights per scale in the block-wise variants: llama.cpp's q8_0 and q4_0 block."""
BLOCK_ACCURACY_LEVEL = 4
"""``MatMulNBits`` computes with int8 activations: the CPU's fast kernels (weights stay per-block; fp32 compute
measured 35x slower at GPT-2 small's shape)."""
NO_HALF_PRECISION = {"LSTM", "GRU", "RNN"}
"""Operators whose half-precision sessions ONNX Runtime cannot run (measured: the LSTM crashes on creation)."""
EXTERNAL_DATA_ABOVE_BYTES = 2**31 - 2**26
"""A graph larger than this keeps its weights in ``NAME.onnx.data`` beside it (protobuf files stop at 2 GiB)."""
STAGING_SUFFIX = ".partial"
"""Staging directories are ``.{OUT}.{PID}.{RANDOM}.partial`` beside the export's directory."""


class ParityError(GenloomError):
    """The exported graph's outputs differ from PyTorch's by more than the tolerance."""


class OnnxExporter:
    """The ``onnx`` exporter: ``export(model_dir, out_dir, opset=20, *, fp16, int8, q8, q4, block_size, portable)``
    writes a genloom export directory (:class:`genloom.contracts.Exporter` with ``produces`` = ``"export"``)."""

    name = "onnx"
    produces = EXPORT_DIRECTORY
    description = "torch -> ONNX graphs, parity-checked against PyTorch; fp16, int8 and block-wise q8/q4 variants"
    options = ("opset", "fp16", "int8", "q8", "q4", "block_size", "portable")

    def export(
        self,
        model_dir: str | Path,
        out_dir: str | Path,
        opset: int = DEFAULT_OPSET,
        *,
        fp16: bool = False,
        int8: bool = False,
        q8: bool = False,
        q4: bool = False,
        block_size: int = DEFAULT_BLOCK_SIZE,
        portable: bool = False,
    ) -> Manifest:
        """Export the torch model in ``model_dir`` to ``out_dir``; returns the export's manifest.

        ``out_dir`` must be new or an empty directory. ``fp16`` (weights and
        activations in half precision, inputs and outputs fp32) and ``int8``
        (dynamically quantized weights) add variants of every graph, with their
        measured error (and, for text, the validation perplexity of each precision).
        ``q8`` and ``q4`` add weight-only block-wise variants (ONNX Runtime's ``MatMulNBits``:
        8 or 4 bits, one scale per ``block_size`` weights), with their agreement with fp32
        on the kind's variant checks where it has them (64 greedy tokens on 5 prompts for text).
        ``portable`` writes the generator's graphs in standard ONNX operators only (where its
        description has such a form), for runtimes without ONNX Runtime's contrib operators.
        """
        source, out = Path(model_dir), Path(out_dir)
        check_output_directory(out, "--out", empty=True)
        if not 17 <= opset <= 22:
            raise ConfigError(f"opset: {opset} is not supported; use 17 to 22 (default {DEFAULT_OPSET})")
        if isinstance(block_size, bool) or not isinstance(block_size, int):
            raise ConfigError(f"block_size: {block_size!r} is not an integer; use 32 (the default) or 128")
        if block_size < 16 or block_size & (block_size - 1):
            raise ConfigError(f"block_size: {block_size} is not a power of two from 16; use 32 (the default) or 128")
        manifest = read_manifest(source)
        if manifest.kind != "model":
            raise ConfigError(f"'{source}' is already an export; export the trained model's directory")
        torch_model = genloom.load(source)
        assert isinstance(torch_model, TorchModel), "a manifest of kind 'model' loads as a TorchModel"
        generator = torch_model.generator
        spec = generator.export_spec()
        if spec is None:
            raise ConfigError(f"'{generator.name}' does not describe an ONNX export (its export_spec() is None)")
        if portable and spec.portable is not None:
            spec = spec.portable
        check_export_spec(spec, get_registry().runtime_driver(spec.driver).value, generator.name, generator.modality)
        stamp = {
            "genloom.generator": generator.name,
            "genloom.plugin": manifest.plugin,
            "genloom.driver": spec.driver,
            "genloom.source_sha256": artifact_id(source),
            "genloom.modality": generator.modality,
            "genloom.tokenizer": spec.driver_options.get("tokenizer", ""),
        }
        wanted = (("fp16", fp16), ("int8", int8), ("q8", q8), ("q4", q4))
        precisions = [precision for precision, asked in wanted if asked]
        _remove_stale_staging(out)
        staging = _make_staging(out)
        try:
            files, measured = _export_graphs(
                spec,
                staging / ".scratch",
                opset,
                stamp,
                precisions,
                classes=int(manifest.facts.get("num_classes") or 1),
                block_size=block_size,
            )
            export: dict[str, Any] = {
                "driver": spec.driver,
                "driver_options": spec.driver_options,
                "opset": opset,
                **measured,
                "tolerance": FP32_TOLERANCE,
                "precision": "fp32",
                "source_sha256": stamp["genloom.source_sha256"],
            }
            files.update({name: (source / name).read_bytes() for name in manifest.files if name != WEIGHTS_FILE})
            files.update(spec.files)
            written = write_artifact(
                staging,
                files,
                kind="export",
                generator=manifest.generator,
                plugin=manifest.plugin,
                plugin_version=manifest.plugin_version,
                modality=manifest.modality,
                config=manifest.config,
                facts=manifest.facts,
                training=manifest.training,
                export=export,
            )
            _check_end_to_end(torch_model, staging)
            if export["variants"]:
                _record_variant_figures(torch_model.kind, staging, manifest, export)
            written = written.model_copy(update={"export": ExportSection.model_validate(export)})
            atomic_write_text(staging / MANIFEST_FILE, written.model_dump_json(indent=2) + "\n")
            _publish(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return written


def _export_graphs(
    spec: genloom.ExportSpec,
    scratch: Path,
    opset: int,
    stamp: dict[str, str],
    precisions: list[str],
    classes: int,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Export, stamp and parity-check every graph (and its variants) in ``scratch``, which is removed after;
    the files' bytes by name, and the export section's ``graphs``, ``parity_max_abs_diff`` and ``variants``."""
    scratch.mkdir()
    files: dict[str, bytes] = {}
    graphs: list[dict[str, Any]] = []
    parity: dict[str, float] = {}
    variant_error: dict[str, dict[str, float]] = {precision: {} for precision in precisions}
    for graph in spec.graphs:
        path = scratch / f"{graph.name}.onnx"
        written_by = _export_graph(graph, path, opset)
        _stamp(path, {**stamp, "genloom.graph": graph.name}, graph.dynamic_axes)
        parity[graph.name] = _check_parity(graph, path, classes)
        files.update(_graph_files(path))
        variants: dict[str, str] = {}
        for precision in precisions:
            variant = _make_variant(path, precision, block_size)
            _stamp(variant, {"genloom.precision": precision}, {})
            variant_error[precision][graph.name] = _max_difference(graph, variant, classes)
            files.update(_graph_files(variant))
            variants[precision] = variant.name
        graphs.append(
            {
                "name": graph.name,
                "file": path.name,
                "inputs": graph.input_names,
                "outputs": graph.output_names,
                **written_by,
                "variants": variants,
            }
        )
    shutil.rmtree(scratch)
    return files, {
        "graphs": graphs,
        "parity_max_abs_diff": parity,
        "variants": {precision: {"max_abs_diff": errors} for precision, errors in variant_error.items()},
    }


def _export_graph(graph: genloom.GraphSpec, path: Path, opset: int) -> dict[str, str]:
    """The plugin's own graph where it writes one; else the torch.export-based exporter, and the TorchScript one
    for graphs that cannot be captured. Which one wrote the graph (and why the first could not) for the manifest;
    an ExportError naming the operator if neither exporter can."""
    import torch

    graph.module.eval()
    if graph.build is not None:
        _save(graph.build(opset), path)
        _fold_and_check(graph.name, path)
        return {"exporter": "plugin"}
    # The keyword arguments both torch.onnx.export calls below share (lists and an int, so typed Any).
    common: dict[str, Any] = {
        "input_names": graph.input_names,
        "output_names": graph.output_names,
        "opset_version": opset,
    }
    with torch.no_grad(), _captured_output() as dynamo_output:
        try:
            torch.onnx.export(
                graph.module,
                graph.example_inputs,
                str(path),
                dynamo=True,
                verbose=False,
                dynamic_shapes=_dynamic_shapes(graph),
                **common,
            )
            dynamo_error = None
        except Exception as exc:  # noqa: BLE001 - any capture failure: the older exporter may still manage
            dynamo_error = exc
    written_by = {"exporter": "torch.export"}
    if dynamo_error is not None:
        with torch.no_grad(), _captured_output() as torchscript_output:
            try:
                torch.onnx.export(
                    graph.module,
                    graph.example_inputs,
                    str(path),
                    dynamo=False,
                    dynamic_axes=graph.dynamic_axes,
                    **common,
                )
                torchscript_error = None
            except Exception as exc:  # noqa: BLE001 - both exporters failed: said below, with what they printed
                torchscript_error = exc
        if torchscript_error is not None:
            raise _conversion_error(
                graph.name, (dynamo_error, dynamo_output.text), (torchscript_error, torchscript_output.text)
            )
        reason = _one_line(dynamo_error)
        print(
            f"genloom: warning: graph '{graph.name}': the torch.export-based exporter failed ({reason}); "
            "exported with the TorchScript exporter instead",
            file=sys.stderr,
        )
        written_by = {"exporter": "torchscript", "fallback_reason": reason}
    graph.module.eval()  # the exporter may hand back a module in training mode
    _fold_and_check(graph.name, path)
    return written_by


def _fold_and_check(name: str, path: Path) -> None:
    """Store transposed weights as such (see ``_store_weights_transposed``) and run ``onnx.checker`` on the graph."""
    import onnx

    model = onnx.load(str(path))
    if _store_weights_transposed(model):
        _save(model, path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(
            f"graph '{name}': the exported graph fails onnx.checker ({_first_line(str(exc))}); nothing was written",
            details=str(exc),
        ) from None


class _Captured:
    """What an exporter printed, once its ``_captured_output`` block is over."""

    text = ""


@contextlib.contextmanager
def _captured_output() -> Iterator[_Captured]:
    """Everything printed inside the block (Python or C++, stdout or stderr, warnings and logs) goes into the
    yielded record's ``text`` instead of the terminal: the exporters' progress, notes and internal graphs."""
    captured, python_text = _Captured(), io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = _redirect_descriptors(sink.fileno())
        try:
            with contextlib.redirect_stdout(python_text), contextlib.redirect_stderr(python_text):
                yield captured
        finally:
            for descriptor, original in saved.items():
                os.dup2(original, descriptor)
                os.close(original)
            sink.seek(0)
            captured.text = python_text.getvalue() + sink.read().decode("utf-8", "replace")


def _redirect_descriptors(target: int) -> dict[int, int]:
    """Point file descriptors 1 and 2 at ``target`` (where they are open); a copy of each original, to restore."""
    saved = {}
    for descriptor in (1, 2):
        try:
            saved[descriptor] = os.dup(descriptor)
        except OSError:  # closed (a daemon): nothing to silence
            continue
        os.dup2(target, descriptor)
    return saved


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OPERATOR = (re.compile(r"operator '([\w:.]+)'"), re.compile(r"OpOverload\(op='([\w:.]+)'"))


def _first_line(text: str) -> str:
    return (_ANSI.sub("", text).strip().splitlines() or [""])[0].strip()


def _one_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message, without colour codes."""
    return f"{type(exc).__name__}: {_first_line(str(exc))}".rstrip(": ")


def _operator(exc: BaseException | None) -> str | None:
    """The operator an exporter names in its error (or in the errors that caused it), if any."""
    while exc is not None:
        for pattern in _OPERATOR:
            match = pattern.search(str(exc))
            if match:
                return match[1]
        exc = exc.__cause__ or exc.__context__
    return None


def _conversion_error(name: str, dynamo: tuple[Exception, str], torchscript: tuple[Exception, str]) -> ExportError:
    """One line naming the graph and the operator; both exporters' output and traces as the details."""
    operator = _operator(torchscript[0]) or _operator(dynamo[0])
    what = (
        f"operator {operator}"
        if operator
        else f"it (torch.export: {_one_line(dynamo[0])}; TorchScript: {_one_line(torchscript[0])})"
    )
    details = "\n".join(
        f"--- the {label} exporter ---\n{printed}{''.join(traceback.format_exception(exc))}"
        for label, (exc, printed) in (("torch.export-based", dynamo), ("TorchScript", torchscript))
    )
    return ExportError(
        f"graph '{name}': neither ONNX exporter (torch.export, TorchScript) can convert {what}; write the module "
        "with operators ONNX supports (`genloom export --verbose` shows both exporters' full output)",
        details,
    )


def _save(model: Any, path: Path) -> None:
    """Write ``model`` (an ``onnx.ModelProto``) to ``path``; a model past protobuf's 2 GiB limit keeps its weights
    in ``NAME.onnx.data`` beside it, which the export lists and hashes like every other file."""
    import onnx

    data = path.with_name(f"{path.name}.data")
    data.unlink(missing_ok=True)  # onnx appends to an existing data file; the model holds its weights in memory
    onnx.save(
        model,
        str(path),
        save_as_external_data=model.ByteSize() > EXTERNAL_DATA_ABOVE_BYTES,
        all_tensors_to_one_file=True,
        location=data.name,
    )


def _graph_files(path: Path) -> dict[str, bytes]:
    """The graph's file and the external-data files it names, by name."""
    files = {path.name: path.read_bytes()}
    for location in external_data_locations(path):
        data = path.with_name(location)
        if Path(location).name != location or not data.is_file():
            raise ExportError(f"graph file {path.name} names external data {location!r} that is not a file beside it")
        files[location] = data.read_bytes()
    return files


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
        model.graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(array.transpose(permutation)), node.output[0])
        )
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

    per_input = [dict.fromkeys(graph.dynamic_axes.get(name, {}), Dim.DYNAMIC) or None for name in graph.input_names]
    shapes: list[Any] = []
    for parameter in inspect.signature(graph.module.forward).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            shapes.append(tuple(per_input[len(shapes) :]))
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
    _save(model, path)


def _random_inputs(graph: genloom.GraphSpec, batch: int, rng: np.random.Generator, classes: int) -> list[np.ndarray]:
    if graph.sample_inputs is not None:
        return list(graph.sample_inputs(batch, rng))
    inputs: list[np.ndarray] = []
    for example in graph.example_inputs:
        shape = (batch, *example.shape[1:])
        if example.dtype.is_floating_point:
            inputs.append(
                rng.random(shape, dtype=np.float32)
                if example.dim() == 4
                else rng.standard_normal(shape, dtype=np.float32)
            )
        else:  # integer inputs are class labels
            inputs.append(rng.integers(0, classes, size=shape, dtype=np.int64))
    return inputs


def _make_variant(path: Path, precision: str, block_size: int = DEFAULT_BLOCK_SIZE) -> Path:
    """``NAME.fp16.onnx`` (half precision inside, fp32 inputs and outputs), ``NAME.int8.onnx`` (int8 weights,
    one scale per tensor) or ``NAME.q8.onnx`` / ``NAME.q4.onnx`` (8- or 4-bit weights, one scale per block)."""
    import onnx

    variant = path.with_name(f"{path.stem}.{precision}.onnx")
    root, level = logging.getLogger(), logging.getLogger().level
    with _captured_output():
        root.setLevel(logging.ERROR)  # the quantizer's advice about pre-processing goes to the root logger
        try:
            if precision == "fp16":
                from onnxruntime.transformers.float16 import convert_float_to_float16

                model = onnx.load(str(path))
                recurrent = sorted({node.op_type for node in model.graph.node} & NO_HALF_PRECISION)
                if recurrent:
                    raise ConfigError(
                        f"--fp16: ONNX Runtime cannot run this graph's {', '.join(recurrent)} in half precision "
                        "(its session crashes); export it in fp32, with --int8 if you want smaller weights"
                    )
                single = [value.name for value in [*model.graph.input, *model.graph.output]]
                single = [name for name in single if name not in _state_names(model)]
                _save(convert_float_to_float16(model, keep_io_types=single), variant)
            elif precision in BLOCK_BITS:
                _save(_block_quantized(onnx.load(str(path)), BLOCK_BITS[precision], block_size), variant)
            else:
                from onnxruntime.quantization import QuantType, quantize_dynamic

                bare = onnx.load(str(path))
                # The exporters' intermediate shapes can disagree with the quantizer's inference.
                del bare.graph.value_info[:]
                unquantized = path.with_name(f"{path.stem}.int8-input.onnx")
                _save(bare, unquantized)
                quantize_dynamic(
                    str(unquantized),
                    str(variant),
                    weight_type=QuantType.QInt8,
                    use_external_data_format=bare.ByteSize() > EXTERNAL_DATA_ABOVE_BYTES,
                    # Shape inference knows no contrib operator's output type (a fused graph's attention).
                    extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                )
        except GenloomError:
            raise
        except Exception as exc:  # noqa: BLE001 - the converters raise anything; say which graph and precision failed
            raise ParityError(
                f"could not make the {precision} variant of '{path.stem}': {exc}; export without --{precision}"
            ) from None
        finally:
            root.setLevel(level)
    return variant


def _state_names(model: Any) -> set[str]:
    """The inputs and outputs that carry state from one run to the next: float inputs and outputs whose declared
    shapes, symbolic axes included, an output and an input share (a fixed-capacity KV cache's past and present). A
    half-precision variant keeps them in half precision, so that a runtime can bind one buffer as both."""
    from onnx import TensorProto

    def shapes(values: Any) -> dict[str, tuple[object, ...]]:
        return {
            value.name: tuple(d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim)
            for value in values
            if value.type.tensor_type.elem_type == TensorProto.FLOAT
        }

    inputs, outputs = shapes(model.graph.input), shapes(model.graph.output)
    shared = set(inputs.values()) & set(outputs.values())
    return {name for name, shape in [*inputs.items(), *outputs.items()] if shape in shared}


def _block_quantized(model: Any, bits: int, block_size: int) -> Any:
    """Every MatMul with a constant weight as ONNX Runtime's ``MatMulNBits``: symmetric ``bits``-bit weights with one
    scale per ``block_size`` inputs, computed with int8 activations (``accuracy_level`` 4, the CPU's fast path:
    measured on GPT-2 small's shape, 8-bit with fp32 compute ran 35x slower)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(
        model, bits=bits, block_size=block_size, is_symmetric=True, accuracy_level=BLOCK_ACCURACY_LEVEL
    )
    quantizer.process()
    quantized = quantizer.model.model
    if not any(node.op_type == "MatMulNBits" for node in quantized.graph.node):
        raise ConfigError(
            f"--q{bits}: the graph has no MatMul with a constant weight to quantize block-wise; use --int8 instead"
        )
    return quantized


def _record_variant_figures(kind: Any, staging: Path, source: Manifest, export: dict[str, Any]) -> None:
    """Add to each variant in ``export`` its agreement with fp32 on the kind's variant checks (where it has them:
    the share of results equal to fp32's, as the kind compares them) and its validation perplexity beside fp32's, on
    the held-out split of the data the model trained on (where that data is at hand and the model reports one).
    Each precision's model is opened once."""
    checks, validation = kind.variant_check_settings, _validation_split(source)
    fp32 = _open_staged(staging)
    fp32_result = fp32.generate(**checks) if checks is not None else None
    fp32_perplexity = fp32.evaluate(validation).get("perplexity") if validation is not None else None
    for precision, figures in export["variants"].items():
        variant = _open_staged(staging, precision)
        if fp32_perplexity is not None:
            figures["validation_perplexity"] = variant.evaluate(validation)["perplexity"]
            figures["validation_perplexity_fp32"] = fp32_perplexity
        if checks is None:
            continue
        try:
            result = variant.generate(**checks)
        except GenloomError:
            raise
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own errors: name the variant, say what to drop
            raise ParityError(
                f"the {precision} variant cannot generate on the CPU ({_one_line(exc)}); export without --{precision}"
            ) from None
        figures["agreement_with_fp32"] = 1.0 - kind.compare(fp32_result, result)


def _validation_split(source: Manifest) -> Any:
    """The held-out split of the data the model trained on; None where it has none or the data is not here any more
    (the error figures then stand alone)."""
    if source.training is None:
        return None
    try:
        data = get_registry().open_data(source.training.data)
    except GenloomError:
        return None
    return data.split(float(source.config.get("validation_fraction", 0.1)))[1]


def _check_parity(graph: genloom.GraphSpec, path: Path, classes: int) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) and PyTorch; fails above the fp32 tolerance."""
    worst = _max_difference(graph, path, classes)
    if worst > FP32_TOLERANCE:
        raise ParityError(
            f"graph '{graph.name}': ONNX Runtime differs from PyTorch by up to {worst:.3g} "
            f"(tolerance {FP32_TOLERANCE}); nothing was written"
        )
    return worst


def _max_difference(graph: genloom.GraphSpec, path: Path, classes: int) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) and PyTorch over random inputs at batch 1 and 3,
    drawn from ``PARITY_SEED`` (the same inputs for every graph file of one graph)."""
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
        raise ExportError(
            f"graph '{graph.name}': ONNX Runtime cannot open the exported {path.name} ({_first_line(str(exc))}); "
            "nothing was written",
            details=str(exc),
        ) from None
    rng, worst = np.random.default_rng(PARITY_SEED), 0.0
    for batch in PARITY_BATCHES:
        inputs = _random_inputs(graph, batch, rng, classes)
        with torch.no_grad():
            expected = graph.module(*(torch.from_numpy(x) for x in inputs))
        expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        types = {value.name: value.type for value in session.get_inputs()}
        feeds = {
            name: array.astype(np.float16) if types[name] == "tensor(float16)" else array
            for name, array in zip(graph.input_names, inputs, strict=True)
        }
        actual = session.run(graph.output_names, feeds)
        for name, want, got in zip(graph.output_names, expected, actual, strict=True):
            if got.shape != tuple(want.shape):
                raise ParityError(
                    f"graph '{graph.name}' output '{name}': ONNX shape {got.shape} at batch {batch}, "
                    f"PyTorch {tuple(want.shape)}"
                )
            worst = max(worst, float(np.abs(got.astype(np.float32) - want.numpy()).max()))
    return worst


def _check_end_to_end(torch_model: TorchModel, staging: Path) -> None:
    """The public calls agree: the runtime, on the written export, generates what the torch model generates for the
    kind's check settings (a seeded image batch, greedy text, ...), as the kind compares its results."""
    kind = torch_model.kind
    want, got = (model.generate(**kind.check_settings) for model in (torch_model, _open_staged(staging)))
    difference = kind.compare(want, got)
    if difference > FP32_TOLERANCE:
        raise ParityError(
            f"generate({_settings_text(kind.check_settings)}) through the export differs from PyTorch by "
            f"{difference:.3g} ({kind.name} results compared as the kind compares them); nothing was written"
        )


def _settings_text(settings: Mapping[str, object]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in settings.items())


def _open_staged(staging: Path, precision: str = "fp32") -> LoadedModel:
    """The staging directory opened as ``genloom.load`` opens an export (manifest, hashes, runtime), on the CPU."""
    return open_export(staging, read_manifest(staging, unfinished=True), "cpu", None, precision)


def _make_staging(out: Path) -> Path:
    """A new staging directory ``.{OUT}.{PID}.{RANDOM}.partial`` beside ``out``, marked unfinished until it is
    checked."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=STAGING_SUFFIX, dir=out.parent))
    (staging / UNFINISHED_MARKER).write_text("genloom export: not checked yet; loaders refuse this directory\n")
    return staging


def _remove_stale_staging(out: Path) -> None:
    """Delete the staging directories that exports into ``out`` left behind when they were killed (their process
    is gone)."""
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(\d+)\.[a-z0-9_]+{re.escape(STAGING_SUFFIX)}")
    if not out.parent.is_dir():
        return
    for entry in out.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and entry.is_dir() and not entry.is_symlink() and not _process_alive(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _publish(staging: Path, out: Path) -> None:
    """The checked staging directory becomes ``out`` (which may be an empty folder the user made) in one rename."""
    (staging / UNFINISHED_MARKER).unlink()
    staging.chmod(DIRECTORY_MODE)  # mkdtemp makes it private
    try:
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except OSError as exc:
        raise ArtifactError(
            f"--out: cannot move the export into '{out}' ({exc.strerror}); it was filled or removed "
            "while the export ran: give a new directory"
        ) from None
