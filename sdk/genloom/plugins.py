"""Plugin discovery and the registry of everything plugins provide.

Plugins come from three places: genloom's own core plugins (the built-in kinds of
data, data sources and image runtime driver), the ``genloom`` entry-point group of installed distributions, and
objects registered in this process with :func:`register` (for apps and tests).
``GENLOOM_PLUGINS`` limits which entry-point plugins load (comma-separated entry
point names; empty means none). ``GENLOOM_TRACE_PLUGINS=1`` turns on pluggy's
hook-call tracing, written to stderr.

Each plugin is loaded and each of its hooks is called on its own, so a plugin
that fails to import, implements an unknown hook, or raises in a hook is recorded
with its error and every other plugin keeps working. The registry is built once
per process, on first use.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from genloom import hookspecs
from genloom.contracts import EXPORT_DIRECTORY, Exporter, RuntimeDriver
from genloom.errors import DataError, PluginError

if TYPE_CHECKING:
    from genloom.data.types import Dataset, DataSource
    from genloom.generator import AnyGenerator
    from genloom.kinds import DataKind

ENTRY_POINT_GROUP = "genloom"
ENV_SELECT = "GENLOOM_PLUGINS"
ENV_TRACE = "GENLOOM_TRACE_PLUGINS"
CORE_PLUGINS = ("genloom.kinds.builtin", "genloom.data.builtin", "genloom.runtime.builtin")

# What each hook registers, in the words used in messages.
HOOK_KINDS = {
    "register_data_kinds": "data kind",
    "register_generators": "generator",
    "register_data_sources": "data source",
    "register_exporters": "exporter",
    "register_runtime_drivers": "runtime driver",
}

T = TypeVar("T")


@dataclass(frozen=True)
class PluginInfo:
    """One plugin as ``genloom plugins`` shows it."""

    name: str
    version: str
    origin: str  # "core", "entry point", or "in process"
    error: str | None = None
    provides: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Registration(Generic[T]):
    """Something a plugin registered, with the plugin it came from."""

    name: str
    value: T
    plugin: str
    plugin_version: str


@dataclass
class Registry:
    """Everything the loaded plugins provide, by kind and name.

    ``entries`` holds the names exactly one plugin registered; a name that several
    plugins registered is in ``conflicts`` and is reached by its qualified name
    ``PLUGIN:NAME``, which ``qualified`` holds for every registration.
    """

    plugins: list[PluginInfo]
    entries: dict[str, dict[str, Registration[Any]]]
    conflicts: dict[tuple[str, str], list[str]]
    qualified: dict[str, dict[str, Registration[Any]]] = field(default_factory=dict)

    def generator(self, name: str) -> Registration[type[AnyGenerator]]:
        """The generator class registered as ``name``, or as ``name`` by one plugin when written ``PLUGIN:NAME``."""
        return self._lookup("generator", name)

    def generator_of(self, plugin: str, name: str) -> Registration[type[AnyGenerator]]:
        """The generator ``name`` exactly as ``plugin`` registered it: how a saved model finds the code that saved
        it."""
        found = self.qualified.get("generator", {}).get(f"{plugin}:{name}")
        if found is not None:
            return found
        offered = [r.plugin for r in self.qualified.get("generator", {}).values() if r.name == name]
        elsewhere = (
            f"; '{name}' is offered by {', '.join(repr(p) for p in offered)}, but the model needs its own plugin's code"
            if offered
            else ""
        )
        raise PluginError(
            f"this model was saved by the generator '{name}' of plugin '{plugin}', which is not installed "
            f"(or failed to load, see `genloom plugins`){elsewhere}; install that plugin"
        )

    def registration_of(self, kind: str, value: object) -> Registration[Any] | None:
        """The registration whose value is ``value`` (e.g. a generator class), whichever plugin made it."""
        return next((r for r in self.qualified.get(kind, {}).values() if r.value is value), None)

    def kind(self, name: str) -> DataKind[Any, Any, Any]:
        """The :class:`genloom.kinds.DataKind` registered as ``name``."""
        registration: Registration[DataKind[Any, Any, Any]] = self._lookup("data kind", name)
        return registration.value

    def data_source(self, name: str) -> Registration[DataSource]:
        """The data source registered as ``name``."""
        return self._lookup("data source", name)

    def exporter(self, name: str | None = None, produces: str = EXPORT_DIRECTORY) -> Registration[Exporter]:
        """The exporter registered as ``name``; without a name, the one exporter that ``produces`` that target
        (by default a genloom export directory), whatever it is called."""
        if name is not None:
            return self._lookup("exporter", name)
        found = [r for r in self.qualified.get("exporter", {}).values() if r.value.produces == produces]
        if len(found) == 1:
            return found[0]
        if not found:
            raise PluginError(
                f"no installed exporter produces {produces!r} (exporters: "
                f"{', '.join(self.names('exporter')) or 'none'}); "
                "install one, e.g. genloom[train] for the ONNX exporter"
            )
        names = ", ".join(f"'{r.plugin}:{r.name}'" for r in found)
        raise PluginError(f"several exporters produce {produces!r} ({names}); choose one with --exporter NAME")

    def runtime_driver(self, name: str) -> Registration[RuntimeDriver]:
        """The runtime driver registered as ``name``."""
        return self._lookup("runtime driver", name)

    def names(self, kind: str) -> list[str]:
        """Sorted names of one kind (``"generator"``, ``"data source"``, ...)."""
        return sorted(self.entries.get(kind, {}))

    def source_for(self, spec: str) -> DataSource:
        """The registered :class:`genloom.data.DataSource` that ``--data`` ``NAME`` or ``NAME:ARGUMENT`` names, unopened
        (its ``modality`` says the kind of data it holds)."""
        return self.data_source(spec.partition(":")[0]).value

    def open_data(self, spec: str) -> Dataset:
        """Open ``--data`` ``NAME`` or ``NAME:ARGUMENT`` through the registered data source."""
        name, sep, argument = spec.partition(":")
        registration = self.data_source(name)
        source = registration.value
        if source.argument and source.argument_required and not argument:
            raise DataError(f"data source '{name}' needs {source.argument}: use --data {name}:{source.argument}")
        if not source.argument and sep:
            raise DataError(f"data source '{name}' takes no argument: use --data {name}")
        return _open_source(source, registration.plugin, spec, argument if sep else None)

    def _lookup(self, kind: str, name: str) -> Registration[Any]:
        if ":" in name:
            found = self.qualified.get(kind, {}).get(name)
            if found is None:
                written = ", ".join(sorted(self.qualified.get(kind, {}))) or "none"
                raise PluginError(f"no {kind} '{name}' (written PLUGIN:NAME; available: {written})")
            return found
        if (kind, name) in self.conflicts:
            raise PluginError(_conflict_message(kind, name, self.conflicts[(kind, name)]))
        found = self.entries.get(kind, {}).get(name)
        if found is not None:
            return found
        known = self.names(kind)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        failed = [p.name for p in self.plugins if p.error]
        broken = f"; plugins that failed to load: {', '.join(failed)} (see `genloom plugins`)" if failed else ""
        raise PluginError(f"no {kind} named '{name}' ({hint}available: {', '.join(known) or 'none'}){broken}")


_registered_in_process: list[tuple[str, object]] = []
_registry: Registry | None = None
_lock = threading.Lock()


def register(plugin: object, name: str | None = None) -> None:
    """Register a plugin object (a module or any object with hook functions) in this process.

    Apps and tests use this for plugins that are not installed as distributions.
    The registry is rebuilt on its next use.
    """
    global _registry
    plugin_name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    with _lock:
        _registered_in_process.append((plugin_name, plugin))
        _registry = None


def unregister(name: str) -> None:
    """Remove a plugin registered with :func:`register`; the registry is rebuilt on its next use."""
    global _registry
    with _lock:
        _registered_in_process[:] = [(n, p) for n, p in _registered_in_process if n != name]
        _registry = None


def in_process_modules() -> list[str]:
    """Names of the modules registered with :func:`register`, so that a child process can register them too."""
    with _lock:
        return [plugin.__name__ for _, plugin in _registered_in_process if isinstance(plugin, type(sys))]


def reset() -> None:
    """Forget the built registry, so the next use discovers plugins again (after installing one)."""
    global _registry
    with _lock:
        _registry = None


def get_registry() -> Registry:
    """The registry of this process, built on first use."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = _build_registry()
        return _registry


def _build_registry() -> Registry:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    if os.environ.get(ENV_TRACE):
        manager.trace.root.setwriter(sys.stderr.write)
        manager.enable_tracing()

    loaded: list[tuple[str, str, str, object]] = []  # name, version, origin, plugin object
    infos: list[PluginInfo] = []

    def add(name: str, version: str, origin: str, plugin: object) -> None:
        error = _register_checked(manager, name, plugin)
        if error:
            infos.append(PluginInfo(name, version, origin, error))
        else:
            loaded.append((name, version, origin, plugin))

    from genloom.version import __version__

    for module_name in CORE_PLUGINS:
        add(module_name, __version__, "core", importlib.import_module(module_name))
    for entry_point, version, error in _selected_entry_points():
        if error:
            infos.append(PluginInfo(entry_point, version, "entry point", error))
            continue
        try:
            with _plugin_code():
                plugin = entry_point.load()
        except PluginCodeFailed as failure:  # a broken plugin must not break the others
            infos.append(PluginInfo(entry_point.name, version, "entry point", f"import failed: {failure}"))
            continue
        add(entry_point.name, version, "entry point", plugin)
    for name, plugin in list(_registered_in_process):
        add(name, str(getattr(plugin, "__version__", "")), "in process", plugin)
    manager.check_pending()

    entries: dict[str, dict[str, Registration[Any]]] = {kind: {} for kind in HOOK_KINDS.values()}
    qualified: dict[str, dict[str, Registration[Any]]] = {kind: {} for kind in HOOK_KINDS.values()}
    owners: dict[tuple[str, str], list[str]] = {}
    for name, version, origin, plugin in loaded:
        others = [p for p in manager.get_plugins() if p is not plugin]
        provided: dict[str, list[Registration[Any]]] = {}
        try:
            for hook_name, kind in HOOK_KINDS.items():
                collected: list[Registration[Any]] = []
                call_one_plugin = manager.subset_hook_caller(hook_name, remove_plugins=others)
                with _plugin_code():
                    call_one_plugin(register=_collector(kind, name, version, collected))
                provided[kind] = collected
        except PluginCodeFailed as failure:  # a plugin's hook raised: show it, keep the others
            infos.append(PluginInfo(name, version, origin, f"{hook_name} failed: {failure}"))
            continue
        for kind, registrations in provided.items():
            for registration in registrations:
                owners.setdefault((kind, registration.name), []).append(name)
                entries[kind].setdefault(registration.name, registration)
                qualified[kind].setdefault(f"{name}:{registration.name}", registration)
        infos.append(
            PluginInfo(name, version, origin, None, {k: [r.name for r in v] for k, v in provided.items() if v})
        )

    conflicts = {key: plugins for key, plugins in owners.items() if len(plugins) > 1}
    for kind, name in conflicts:
        del entries[kind][name]
    infos = _drop_unknown_kinds(infos, entries, qualified)
    return Registry(infos, entries, conflicts, qualified)


def _drop_unknown_kinds(
    infos: list[PluginInfo],
    entries: dict[str, dict[str, Registration[Any]]],
    qualified: dict[str, dict[str, Registration[Any]]],
) -> list[PluginInfo]:
    """Remove each generator, data source and runtime driver whose kind of data no plugin registered; its plugin's
    line in ``genloom plugins`` says why."""
    kinds = sorted({r.name for r in qualified["data kind"].values()})
    problems: dict[str, list[str]] = {}
    dropped: dict[str, set[tuple[str, str]]] = {}
    for what, attribute in (("generator", "modality"), ("data source", "modality"), ("runtime driver", "kind")):
        for key, registration in list(qualified[what].items()):
            declared = getattr(registration.value, attribute)
            if declared in kinds:
                continue
            del qualified[what][key]
            if entries[what].get(registration.name) is registration:
                del entries[what][registration.name]
            dropped.setdefault(registration.plugin, set()).add((what, registration.name))
            problems.setdefault(registration.plugin, []).append(
                f"{what} '{registration.name}' has {attribute} '{declared}', which no plugin registers as a data kind "
                f"(kinds: {', '.join(kinds) or 'none'})"
            )
    return [
        PluginInfo(
            info.name,
            info.version,
            info.origin,
            "; ".join(problems[info.name]),
            {k: [n for n in v if (k, n) not in dropped[info.name]] for k, v in info.provides.items()},
        )
        if info.name in problems
        else info
        for info in infos
    ]


class PluginCodeFailed(Exception):
    """A plugin's import or hook raised (``SystemExit`` included); the message says what it raised."""


@contextlib.contextmanager
def _plugin_code() -> Iterator[None]:
    """Run a plugin's import or hook so that whatever it raises becomes :class:`PluginCodeFailed`.

    ``SystemExit`` is caught too: a plugin calling ``sys.exit()`` must not take
    every command down. ``KeyboardInterrupt`` passes through only when it is the
    user's (a real Ctrl-C arrived meanwhile); one a plugin raises itself is its failure.
    """
    pressed = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():

        def on_ctrl_c(signum: int, frame: Any) -> None:
            pressed.set()
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield
    except KeyboardInterrupt as exc:
        if pressed.is_set():
            raise
        raise PluginCodeFailed(_describe(exc)) from None
    except SystemExit as exc:
        raise PluginCodeFailed(f"SystemExit: the plugin called sys.exit({exc.code!r})") from None
    except Exception as exc:  # noqa: BLE001 - a plugin's code may raise anything; it is reported as the plugin's
        raise PluginCodeFailed(_describe(exc)) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _open_source(source: DataSource, plugin: str, spec: str, argument: str | None) -> Dataset:
    """``source.open(argument)``; anything but a GenloomError from the plugin's code is named with the plugin."""
    from genloom.errors import GenloomError

    try:
        return source.open(argument)
    except GenloomError:
        raise
    except Exception as exc:
        raise PluginError(
            f"--data {spec}: the data source '{source.name}' of plugin '{plugin}' failed: {_describe(exc)}; "
            f"check the data, or report it to that plugin's authors"
        ) from exc


def _register_checked(manager: pluggy.PluginManager, name: str, plugin: object) -> str | None:
    """Register ``plugin``; return why it was rejected, or None."""
    try:
        manager.register(plugin, name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        return f"rejected: {exc}"
    known = list(HOOK_KINDS)
    for caller in manager.get_hookcallers(plugin) or []:
        if not caller.has_spec():
            manager.unregister(plugin)
            close = difflib.get_close_matches(caller.name, known, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            return f"plugin '{name}' implements unknown hook '{caller.name}' ({hint}genloom hooks: {', '.join(known)})"
    return None


def _selected_entry_points() -> Iterable[tuple[Any, str, str | None]]:
    """Entry points of the ``genloom`` group that GENLOOM_PLUGINS allows, with their version."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point)
    selected = os.environ.get(ENV_SELECT)
    wanted = sorted(found) if selected is None else [n.strip() for n in selected.split(",") if n.strip()]
    for name in wanted:
        if name not in found:
            yield (
                name,
                "",
                f"{ENV_SELECT} names '{name}', which is not installed (installed: "
                f"{', '.join(sorted(found)) or 'none'})",
            )
            continue
        entry_point = found[name]
        version = entry_point.dist.version if entry_point.dist is not None else ""
        yield entry_point, version, None


def _collector(kind: str, plugin: str, version: str, into: list[Registration[Any]]) -> Callable[[Any], None]:
    """The ``register`` callable handed to one plugin's hook."""
    validate = _VALIDATORS[kind]

    def register(value: Any) -> None:
        into.append(Registration(validate(value), value, plugin, version))

    return register


def _generator_name(value: Any) -> str:
    from genloom.generator import Generator

    if not (isinstance(value, type) and issubclass(value, Generator)):
        raise PluginError(f"register_generators expects a genloom.Generator subclass, got {value!r}")
    value.check_declaration()
    return value.name


def _data_kind_name(value: Any) -> str:
    from genloom.kinds import DataKind

    if not isinstance(value, DataKind):
        raise PluginError(f"register_data_kinds expects a genloom.kinds.DataKind, got {value!r}")
    value.check()
    return value.name


def _protocol(kind: str, protocol: type) -> Callable[[Any], str]:
    """Check a registered exporter or runtime driver against its Protocol: every attribute and method it declares."""
    members = [name for name in vars(protocol) if not name.startswith("_")]

    def name_of(value: Any) -> str:
        missing = [member for member in members if not hasattr(value, member)]
        if missing:
            raise PluginError(
                f"a registered {kind} lacks {', '.join(missing)} (see genloom.contracts.{protocol.__name__}), got "
                f"{value!r}"
            )
        return _named(kind)(value)

    return name_of


def _data_source_name(value: Any) -> str:
    from genloom.data import DataSource

    if not isinstance(value, DataSource):
        raise PluginError(f"register_data_sources expects a genloom.data.DataSource, got {value!r}")
    return value.name


def _named(kind: str) -> Callable[[Any], str]:
    def name_of(value: Any) -> str:
        name = getattr(value, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"a registered {kind} needs a non-empty string attribute 'name', got {value!r}")
        return name

    return name_of


_VALIDATORS: dict[str, Callable[[Any], str]] = {
    "data kind": _data_kind_name,
    "generator": _generator_name,
    "data source": _data_source_name,
    "exporter": _protocol("exporter", Exporter),
    "runtime driver": _protocol("runtime driver", RuntimeDriver),
}


def _conflict_message(kind: str, name: str, plugins: list[str]) -> str:
    sides = " and ".join(f"'{p}'" for p in plugins)
    return (
        f"{kind} '{name}' is registered by more than one plugin: {sides}; "
        f"name one as PLUGIN:NAME (e.g. '{plugins[0]}:{name}'), or choose with {ENV_SELECT}=<entry point names>"
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
