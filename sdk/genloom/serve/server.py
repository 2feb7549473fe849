"""Load model directories under their served names and run the app with uvicorn (SIGTERM and Ctrl-C drain the
requests in flight, then exit)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from genloom.errors import ConfigError
from genloom.serve.limits import ServerLimits


def served_names(directories: Sequence[Path], names: Sequence[str]) -> list[str]:
    """Each directory's served name: ``names`` in order where given, else the directory's name; all different."""
    if len(names) > len(directories):
        raise ConfigError(f"--name: {len(names)} names for {len(directories)} model directories; give at most one each")
    chosen = list(names) + [Path(directory).resolve().name for directory in directories[len(names) :]]
    repeated = sorted({name for name in chosen if chosen.count(name) > 1})
    if repeated:
        raise ConfigError(f"--name: '{repeated[0]}' names two models; give each a different --name")
    return chosen


def serve(
    directories: Sequence[Path],
    *,
    names: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServerLimits | None = None,
) -> None:
    """Serve the models in ``directories`` at ``http://host:port`` until stopped."""
    import uvicorn

    import genloom
    from genloom.serve.app import create_app

    models = {name: genloom.load(d) for name, d in zip(served_names(directories, names), directories, strict=True)}
    app = create_app(models, limits)
    for name, model in models.items():
        print(f"serving '{name}' ({model.manifest.modality}, {model.backend}) at http://{host}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
