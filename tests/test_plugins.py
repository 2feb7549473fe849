"""Discovery through real entry points, isolation of broken plugins, conflicts, selection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import genloom
from genloom.errors import PluginError
from genloom.plugins import get_registry
from tests.conftest import TINY_GAN, assert_one_line_error, install_fake_distribution, run_cli

GENERATOR_MODULE = """
import genloom

class Named(genloom.ImageGenerator):
    name = "{name}"

    def build(self):
        return {{}}

    def configure_optimizers(self):
        return {{}}

    def train_step(self, batch, optimizers, step):
        return {{}}

    def sample(self, settings):
        raise NotImplementedError

@genloom.hookimpl
def register_generators(register):
    register(Named)
"""


def install_generator_plugin(site: Path, dist: str, entry_point: str, generator: str) -> None:
    module = f"fake_{dist.replace('-', '_')}"
    install_fake_distribution(site, dist, {entry_point: module}, {module: GENERATOR_MODULE.format(name=generator)})


def plugin(name: str) -> genloom.plugins.PluginInfo:
    return next(p for p in get_registry().plugins if p.name == name)


def test_builtin_generators_come_from_entry_points_with_their_distribution_version() -> None:
    gan = get_registry().generator("gan")
    assert gan.plugin == "gan" and gan.plugin_version == genloom.__version__
    assert plugin("gan").origin == "entry point"


def test_an_installed_plugin_is_discovered_through_its_entry_point(site: Path) -> None:
    install_generator_plugin(site, "genloom-extra", "extra", "extra-gen")
    found = get_registry().generator("extra-gen")
    assert (found.plugin, found.plugin_version) == ("extra", "1.0")
    assert plugin("extra").provides == {"generator": ["extra-gen"]}


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_keep_working(site: Path) -> None:
    install_fake_distribution(
        site, "genloom-broken", {"broken": "fake_broken"}, {"fake_broken": "raise RuntimeError('no GPU driver here')\n"}
    )
    install_generator_plugin(site, "genloom-fine", "fine", "fine-gen")
    assert plugin("broken").error == "import failed: RuntimeError: no GPU driver here"
    assert get_registry().generator("fine-gen").plugin == "fine"
    assert get_registry().generator("gan").plugin == "gan"


def test_a_plugin_whose_hook_raises_is_reported_and_registers_nothing(site: Path) -> None:
    source = """
import genloom

@genloom.hookimpl
def register_data_sources(register):
    raise ValueError("config file missing")
"""
    install_fake_distribution(site, "genloom-raising", {"raising": "fake_raising"}, {"fake_raising": source})
    assert plugin("raising").error == "register_data_sources failed: ValueError: config file missing"
    assert "digits" in get_registry().names("data source")


def test_an_unknown_hook_name_names_the_plugin_and_the_hook(site: Path) -> None:
    source = """
import genloom

@genloom.hookimpl
def register_generator(register):
    pass
"""
    install_fake_distribution(site, "genloom-typo", {"typo": "fake_typo"}, {"fake_typo": source})
    error = plugin("typo").error
    assert "plugin 'typo'" in error and "unknown hook 'register_generator'" in error
    assert "did you mean 'register_generators'?" in error
    assert get_registry().generator("gan")


def test_two_plugins_registering_one_generator_name_are_both_named(site: Path, tmp_path: Path) -> None:
    install_generator_plugin(site, "genloom-one", "one", "twin")
    install_generator_plugin(site, "genloom-two", "two", "twin")
    with pytest.raises(PluginError, match="generator 'twin' is registered by more than one plugin: 'one' and 'two'"):
        get_registry().generator("twin")
    assert get_registry().generator("gan")
    result = run_cli("train", "twin", "--data", "digits", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "'one' and 'two'", "GENLOOM_PLUGINS")


def test_genloom_plugins_selects_entry_points(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_generator_plugin(site, "genloom-extra", "extra", "extra-gen")
    monkeypatch.setenv("GENLOOM_PLUGINS", "extra")
    assert get_registry().names("generator") == ["extra-gen"]
    monkeypatch.setenv("GENLOOM_PLUGINS", "extra,missing")
    genloom.plugins.reset()
    assert "GENLOOM_PLUGINS names 'missing', which is not installed" in plugin("missing").error


def test_with_entry_points_disabled_no_generator_is_left() -> None:
    """The core knows no plugin by name: without entry points there are no generators."""
    result = run_cli("plugins", "--json", env={"GENLOOM_PLUGINS": ""})
    report = json.loads(result.stdout)
    assert report["generators"] == {}
    assert [p["name"] for p in report["plugins"]] == [
        "genloom.kinds.builtin",
        "genloom.data.builtin",
        "genloom.runtime.builtin",
    ]
    assert "digits" in report["data_sources"] and report["exporters"] == {}
    assert report["runtime_drivers"] == ["image-from-latent"]  # the text drivers are the text plugin's
    assert report["data_kinds"].keys() == {"image", "text"}


def test_sdk_source_never_imports_a_builtin_plugin() -> None:
    sdk = Path(genloom.__file__).parent
    for path in sdk.rglob("*.py"):
        text = path.read_text()
        for name in ("genloom_gan", "genloom_vae", "genloom_text", "genloom_tabular", "genloom_audio", "genloom_onnx"):
            assert name not in text, f"{path} mentions {name}"


def test_in_process_registration_for_apps_and_tests() -> None:
    namespace: dict = {}
    exec(GENERATOR_MODULE.format(name="inproc"), namespace)
    module = type(sys)("fake_inproc")
    module.__dict__.update(namespace)
    genloom.plugins.register(module, name="my-app-plugin")
    assert get_registry().generator("inproc").plugin == "my-app-plugin"
    genloom.plugins.unregister("my-app-plugin")
    assert "inproc" not in get_registry().names("generator")


def test_exporters_and_runtime_drivers_register_by_name(site: Path) -> None:
    source = """
import genloom

class Exporter:
    name = "tarball"
    produces = "tarball"
    description = "a tar file"
    options = ()

    def export(self, model_dir, out_dir, **options):
        pass

class Driver:
    name = "image-from-latent-v2"
    kind = "image"
    description = "v2"
    inputs, outputs, options = ("latents",), ("images",), ()

    def open(self, directory, manifest, providers, session_options, precision):
        pass

@genloom.hookimpl
def register_exporters(register):
    register(Exporter())

@genloom.hookimpl
def register_runtime_drivers(register):
    register(Driver())
"""
    install_fake_distribution(site, "genloom-deploy", {"deploy": "fake_deploy"}, {"fake_deploy": source})
    assert get_registry().exporter("tarball").plugin == "deploy"
    assert get_registry().runtime_driver("image-from-latent-v2").plugin == "deploy"
    with pytest.raises(PluginError, match="no exporter named 'tarbal' \\(did you mean 'tarball'"):
        get_registry().exporter("tarbal")
    assert get_registry().exporter().value.name == "onnx"  # found by what it produces, not by its name


def test_a_driver_of_a_kind_nobody_registered_is_dropped_with_the_reason(site: Path) -> None:
    source = """
import genloom

class Driver:
    name, kind, description = "mesh-driver", "mesh", "meshes"
    inputs, outputs, options = ("noise",), ("vertices",), ()

    def open(self, directory, manifest, providers, session_options, precision):
        pass

@genloom.hookimpl
def register_runtime_drivers(register):
    register(Driver())
"""
    install_fake_distribution(site, "genloom-mesh", {"mesh": "fake_mesh"}, {"fake_mesh": source})
    assert "mesh-driver" not in get_registry().names("runtime driver")
    assert (
        "runtime driver 'mesh-driver' has kind 'mesh', which no plugin registers as a data kind" in plugin("mesh").error
    )


def test_a_generator_that_leaves_a_method_out_is_refused_naming_it(site: Path) -> None:
    source = """
import genloom

class Half(genloom.ImageGenerator):
    name = "half"

    def build(self):
        return {}

@genloom.hookimpl
def register_generators(register):
    register(Half)
"""
    install_fake_distribution(site, "genloom-half", {"half": "fake_half"}, {"fake_half": source})
    assert "fake_half.Half does not implement configure_optimizers, sample, train_step" in plugin("half").error


@pytest.mark.parametrize(
    ("declaration", "fragment"),
    [
        (
            'operations = {"decode": "images"}',
            "Odd.operations['decode'] is 'images'; an operation returns 'result' or 'array'",
        ),
        (
            "capabilities = genloom.Capabilities(streamable=True)",
            "Odd declares capabilities.streamable but does not implement stream()",
        ),
    ],
)
def test_a_generator_declaring_what_it_cannot_do_is_refused(site: Path, declaration: str, fragment: str) -> None:
    body = (
        GENERATOR_MODULE.format(name="odd")
        .replace("class Named(", "class Odd(")
        .replace("register(Named)", "register(Odd)")
    )
    source = body.replace('    name = "odd"\n', f'    name = "odd"\n    {declaration}\n')
    install_fake_distribution(site, "genloom-odd", {"odd": "fake_odd"}, {"fake_odd": source})
    assert fragment in plugin("odd").error


def test_a_registered_object_without_a_name_is_rejected(site: Path) -> None:
    source = """
import genloom

@genloom.hookimpl
def register_runtime_drivers(register):
    register(object())
"""
    install_fake_distribution(site, "genloom-nameless", {"nameless": "fake_nameless"}, {"fake_nameless": source})
    assert (
        "a registered runtime driver lacks name, kind, description, inputs, outputs, options, open "
        "(see genloom.contracts.RuntimeDriver)"
    ) in plugin("nameless").error


def test_registering_something_that_is_not_a_generator_is_a_plugin_error(site: Path) -> None:
    source = """
import genloom

@genloom.hookimpl
def register_generators(register):
    register(object)
"""
    install_fake_distribution(site, "genloom-wrong", {"wrong": "fake_wrong"}, {"fake_wrong": source})
    assert "register_generators expects a genloom.Generator subclass" in plugin("wrong").error


def test_plugins_command_shows_failures_next_to_working_plugins(site: Path) -> None:
    install_fake_distribution(
        site, "genloom-broken", {"broken": "fake_broken"}, {"fake_broken": "import not_a_module\n"}
    )
    result = run_cli("plugins")
    assert result.returncode == 0, result.stderr
    broken = next(line for line in result.stdout.splitlines() if line.strip().startswith("broken"))
    assert "FAILED: import failed: ModuleNotFoundError" in broken
    assert any(line.strip().startswith("gan ") and "image" in line for line in result.stdout.splitlines())


TRAINING_ONLY_MODULES = {"torch", "onnx", "onnxscript", "safetensors", "sklearn", "matplotlib", "tqdm", "transformers"}


def modules_imported(*args: str) -> set[str]:
    """The top-level modules ``python -X importtime ARGS`` imports, read from importtime's report on stderr."""
    result = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "imported package" not in line
    ]
    return {row.split("|")[-1].strip().split(".")[0] for row in rows}


@pytest.mark.timeout(120)
def test_importing_genloom_and_listing_plugins_import_nothing_only_the_train_extra_installs() -> None:
    """What the runtime install (no `genloom[train]`) lacks is never imported by `import genloom` or
    `genloom plugins`."""
    imported = modules_imported("-c", "import genloom")
    assert "genloom" in imported and sorted(imported & TRAINING_ONLY_MODULES) == []
    listed = modules_imported("-m", "genloom", "plugins")
    assert {"genloom_gan", "genloom_text", "genloom_onnx"} <= listed  # the entry-point plugins were imported
    assert sorted(listed & TRAINING_ONLY_MODULES) == []


def test_trace_plugins_prints_pluggy_hook_calls() -> None:
    result = run_cli("plugins", env={"GENLOOM_TRACE_PLUGINS": "1"})
    assert result.returncode == 0
    assert "register_generators" in result.stderr and "register_data_sources" in result.stderr


def test_every_hookspec_is_documented_with_its_signature_and_tested() -> None:
    """Meta-test: adding a hook means documenting it in docs/plugins.md and testing it."""
    import inspect

    from genloom import hookspecs

    root = Path(__file__).parents[1]
    guide = (root / "docs" / "plugins.md").read_text()
    this_test = inspect.getsource(test_every_hookspec_is_documented_with_its_signature_and_tested)
    tests = "".join(p.read_text() for p in (root / "tests").glob("test_*.py")).replace(this_test, "")
    specs = [f for name, f in vars(hookspecs).items() if name.startswith("register_") and callable(f)]
    assert {f.__name__ for f in specs} == set(genloom.plugins.HOOK_KINDS)
    for spec in specs:
        assert spec.__doc__, f"{spec.__name__} has no docstring"
        signature = f"{spec.__name__}({', '.join(inspect.signature(spec).parameters)})"
        assert f"`{signature}`" in guide, f"docs/plugins.md does not document `{signature}`"
        assert f"def {spec.__name__}(register)" in tests, f"no test implements {spec.__name__}"


@pytest.mark.timeout(120)
def test_a_plugin_that_calls_sys_exit_at_import_is_reported_and_every_command_still_works(
    site: Path, tmp_path: Path
) -> None:
    install_fake_distribution(
        site,
        "genloom-quitter",
        {"quitter": "fake_quitter"},
        {"fake_quitter": "import sys\nsys.exit('no licence key')\n"},
    )
    listed = run_cli("plugins")
    assert listed.returncode == 0, listed.stderr
    quitter = next(line for line in listed.stdout.splitlines() if line.strip().startswith("quitter"))
    assert "FAILED: import failed: SystemExit: the plugin called sys.exit('no licence key')" in quitter
    assert run_cli("schema", "gan").returncode == 0
    trained = run_cli("train", "gan", "--data", "digits", "--out", str(tmp_path / "gan"), "--steps", "2", *TINY_GAN)
    assert trained.returncode == 0 and "model saved" in trained.stdout, trained.stderr


def test_a_keyboard_interrupt_a_plugin_raises_itself_is_its_failure_not_the_users(site: Path) -> None:
    install_fake_distribution(site, "genloom-odd", {"odd": "fake_odd"}, {"fake_odd": "raise KeyboardInterrupt\n"})
    assert plugin("odd").error == "import failed: KeyboardInterrupt: "
    assert get_registry().generator("gan")


def test_a_data_source_whose_open_raises_is_one_line_naming_the_plugin(site: Path, tmp_path: Path) -> None:
    source = """
import genloom
from genloom.data import DataSource

def open_rows(argument):
    raise KeyError("column 'price'")

@genloom.hookimpl
def register_data_sources(register):
    register(DataSource("rows", open_rows, "rows of a shop", "PATH"))
"""
    install_fake_distribution(site, "genloom-rows", {"rows": "fake_rows"}, {"fake_rows": source})
    result = run_cli("train", "gan", "--data", "rows:shop.csv", "--out", str(tmp_path / "x"))
    assert_one_line_error(result, "--data rows:shop.csv", "data source 'rows' of plugin 'rows' failed", "KeyError")


@pytest.mark.timeout(180)
def test_a_plugin_reusing_a_builtin_name_locks_nobody_out_of_their_models(site: Path, tmp_path: Path) -> None:
    """A model loads with the plugin that saved it; for training, PLUGIN:NAME chooses."""
    model = tmp_path / "gan"
    trained = run_cli("train", "gan", "--data", "digits", "--out", str(model), "--steps", "2", *TINY_GAN)
    assert trained.returncode == 0, trained.stderr
    install_generator_plugin(site, "genloom-othergan", "othergan", "gan")

    made = run_cli("generate", str(model), "-n", "2", "--out", str(tmp_path / "a.png"))
    assert made.returncode == 0, made.stderr
    assert run_cli("info", str(model)).returncode == 0
    ambiguous = run_cli("train", "gan", "--data", "digits", "--out", str(tmp_path / "again"), "--steps", "2", *TINY_GAN)
    assert_one_line_error(ambiguous, "'gan' and 'othergan'", "PLUGIN:NAME", "'gan:gan'")
    chosen = run_cli(
        "train", "gan:gan", "--data", "digits", "--out", str(tmp_path / "again"), "--steps", "2", *TINY_GAN
    )
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(run_cli("info", str(tmp_path / "again"), "--json").stdout)["plugin"] == "gan"
    assert get_registry().generator("othergan:gan").plugin == "othergan"
    assert_one_line_error(run_cli("schema", "nobody:gan"), "no generator 'nobody:gan'", "gan:gan", "othergan:gan")


def test_a_model_whose_plugin_is_gone_says_which_plugin_to_install(tmp_path: Path) -> None:
    model = tmp_path / "gan"
    genloom.train("gan", "digits", model, progress=False, steps=2, width=8, latent_dim=8, batch_size=16, sample_every=0)
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["plugin"] = "genloom-fancy-gans"
    (model / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(
        run_cli("generate", str(model)),
        "plugin 'genloom-fancy-gans', which is not installed",
        "offered by 'gan'",
        "install that plugin",
    )
