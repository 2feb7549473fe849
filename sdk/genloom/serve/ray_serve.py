"""The same app as a Ray Serve deployment: ``replicas`` copies of ``genloom serve``'s app, each in a Ray actor that
loads the models itself, behind Ray Serve's HTTP proxy (``genloom serve --ray --replicas N``, or
:func:`deployment` in a Ray application of your own). Needs ``genloom[ray]``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genloom.serve.limits import ServerLimits
from genloom.serve.server import served_names

APP_NAME = "genloom"


def deployment(
    directories: Sequence[Path], *, names: Sequence[str] = (), limits: ServerLimits | None = None, replicas: int = 1
) -> Any:
    """A bound Ray Serve application serving ``directories`` (under ``names``) from ``replicas`` replicas; pass it
    to ``ray.serve.run``."""
    from ray import serve

    chosen = served_names(directories, names)
    paths = [str(Path(directory).resolve()) for directory in directories]

    def build_app() -> Any:  # runs in each replica
        import genloom
        from genloom.serve.app import create_app

        return create_app({name: genloom.load(path) for name, path in zip(chosen, paths, strict=True)}, limits)

    ingress = serve.ingress(build_app)()
    waiting = (limits or ServerLimits()).queue_size  # each replica's own queue and batcher take them, not Ray's router
    return serve.deployment(name=APP_NAME, num_replicas=replicas, max_ongoing_requests=waiting)(ingress).bind()


def serve_with_ray(
    directories: Sequence[Path],
    *,
    names: Sequence[str] = (),
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServerLimits | None = None,
    replicas: int = 1,
) -> None:
    """Start a local Ray instance (on ``host`` when it is the loopback address), run the deployment with Ray Serve's
    proxy at ``http://host:port`` until SIGTERM or Ctrl-C, then shut Serve and Ray down."""
    import ray
    from ray import serve
    from ray.serve.schema import ReplicaState

    application = deployment(directories, names=names, limits=limits, replicas=replicas)  # names checked first
    if host in ("127.0.0.1", "localhost"):  # Ray's node on the loopback address too (its actors' gRPC ports are not)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1")
    else:
        ray.init(address="local", include_dashboard=False)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(application, name=APP_NAME, route_prefix="/")
        states = serve.status().applications[APP_NAME].deployments[APP_NAME].replica_states
        running = states.get(ReplicaState.RUNNING, 0)
        chosen = ", ".join(f"'{name}'" for name in served_names(directories, names))
        print(f"serving {chosen} on Ray Serve, {running} replicas running, at http://{host}:{port}", flush=True)
        stop.wait()
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
