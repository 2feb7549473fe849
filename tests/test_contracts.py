"""The check that ties an export description to its runtime driver, on descriptions a plugin gets wrong."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from genloom.contracts import ExportSpec, GraphSpec, check_export_spec
from genloom.errors import PluginError


@dataclass(frozen=True)
class LatentDriver:
    """Just the declarations ``check_export_spec`` reads from a driver."""

    name: str = "latent"
    kind: str = "image"
    inputs: tuple[str, ...] = ("z",)
    outputs: tuple[str, ...] = ("images",)
    options: tuple[str, ...] = ()


def spec(input_names: list[str], example_count: int) -> ExportSpec:
    torch = pytest.importorskip("torch")
    graph = GraphSpec(
        name="decoder",
        module=torch.nn.Identity(),
        example_inputs=tuple(torch.zeros(2, 4) for _ in range(example_count)),
        input_names=input_names,
        output_names=["images"],
        dynamic_axes={"z": {0: "batch"}},
    )
    return ExportSpec(driver="latent", graphs=[graph])


def test_a_description_that_fits_its_driver_passes() -> None:
    check_export_spec(spec(["z"], 1), LatentDriver(), "gen", "image")


def test_example_inputs_without_a_name_each_are_refused_naming_the_graph_and_the_counts() -> None:
    with pytest.raises(PluginError, match="graph 'decoder' has 2 example inputs but 1 input names"):
        check_export_spec(spec(["z"], 2), LatentDriver(), "gen", "image")
