"""`clipascene-backend serve|stop`: run the local sketch service, or stop it."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

from clipascene_core import __version__
from clipascene_core.models.clip import add_model_arguments

from .executors import EXECUTORS
from .logs import setup_logging
from .settings import ExecutorSettings, ModelSettings

logger = logging.getLogger("backend")
DEFAULT_PORT = 8765
TOKEN_VARIABLE = "CLIPASCENE_TOKEN"
#: Shorter tokens can be guessed by anyone who can reach the port.
MIN_TOKEN_LENGTH = 16


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipascene-backend",
                                     description="The local CLIPascene sketch service.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the HTTP API (and a web page at /)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (default 127.0.0.1; any other needs a token)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--data-dir", type=Path, default=None,
                       help="jobs, logs and (by default) weights; default: the user data folder")
    serve.add_argument("--device", default="auto",
                       help="auto, cpu, cuda, mps, or a comma list (cuda:0,cuda:1): one worker each")
    serve.add_argument("--token", default=None,
                       help=f"require this token (at least {MIN_TOKEN_LENGTH} characters) on every "
                            f"request (or set ${TOKEN_VARIABLE})")
    serve.add_argument("--public-name", action="append", default=[], metavar="HOST",
                       help="a host name clients reach the service by, beyond the bound address "
                            "and loopback (e.g. behind a reverse proxy); may be repeated")
    add_model_arguments(serve)
    serve.add_argument("--models-dir", type=Path, default=None,
                       help="folder with the model weights (default: models/ in the data folder)")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    serve.add_argument("--executor", choices=EXECUTORS, default="local",
                       help="where jobs run: local (a worker per --device, the default) or ray "
                            "(each job a Ray task on a cluster; pip install 'clipascene[cluster]')")
    serve.add_argument("--ray-address", default=None, metavar="ADDR",
                       help="with --executor ray: the cluster's HOST:PORT, or auto (the cluster "
                            "this machine has joined); default: start Ray on this machine")
    serve.add_argument("--gpus-per-job", type=_non_negative, default=None, metavar="F",
                       help="with --executor ray: GPUs per job (0.25 packs four jobs on a GPU; "
                            "0: CPU); default 1 where the cluster has GPUs, else 0")
    serve.add_argument("--max-jobs", type=int, default=None, metavar="N",
                       help="with --executor ray: jobs on the cluster at once (default: as many "
                            "as its resources hold at the start)")
    stop = commands.add_parser("stop", help="stop the backend serving from a data folder "
                               "(e.g. the one Inkscape started)")
    stop.add_argument("--data-dir", type=Path, default=None,
                      help="the data folder the backend was started with (default: the user "
                           "data folder, which the extension's backend uses)")
    stop.add_argument("--timeout", type=float, default=60.0,
                      help="seconds to wait for it to finish stopping (default 60)")
    return parser


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number of GPUs, 0 or more, not {text!r}")
    return value


def plan_executor(args: argparse.Namespace) -> tuple[ExecutorSettings, list[str]]:
    """The executor and the devices jobs are configured for; joins the Ray cluster for
    --executor ray. Raises RuntimeError saying what is wrong."""
    if args.executor == "local":
        if args.ray_address or args.gpus_per_job is not None or args.max_jobs is not None:
            raise RuntimeError("--ray-address, --gpus-per-job and --max-jobs go with --executor ray.")
        return ExecutorSettings(), expand_devices(args.device)
    from clipascene_core.scene.cluster import cluster_resources, config_device, connect, default_gpus

    if args.max_jobs is not None and args.max_jobs < 1:
        raise RuntimeError("--max-jobs must be 1 or more.")
    ray = connect(args.ray_address)
    gpus = default_gpus(ray, args.gpus_per_job)
    logger.info("jobs run on the Ray cluster at %s (%s), %g GPU each", args.ray_address or
                "this machine", cluster_resources(ray)["total"], gpus)
    return ExecutorSettings("ray", args.ray_address, gpus, args.max_jobs), [config_device(gpus)]


def expand_devices(requested: str) -> list[str]:
    """'auto' -> every CUDA GPU (one worker each), else mps, else cpu; a comma list as given."""
    import torch

    from clipascene_core.models.clip import resolve_device

    if requested == "auto":
        if torch.cuda.is_available():
            return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
        return [str(resolve_device("auto"))]
    devices = [part.strip() for part in requested.split(",") if part.strip()]
    for device in devices:
        resolve_device(device)  # raises a clear error for a device this machine lacks
    return devices


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def pid_file(data_dir: Path) -> Path:
    """Where a serving backend records itself, for `clipascene-backend stop`."""
    return data_dir / "backend.pid"


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie waiting for its parent."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here (macOS): it exists
    return state != "Z"


def _is_backend(pid: int) -> bool:
    """Whether `pid` is a backend and not another program that got a stale record's pid."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc here: trust the record
    return b"serve" in command and any(b"backend" in part for part in command)


def stop(args: argparse.Namespace) -> int:
    """Stop the backend recorded in the data folder: SIGTERM, then wait while it finishes
    (a running job is put back in the queue and resumes at the next start)."""
    from clipascene_core.paths import data_dir as default_data_dir

    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    record_file = pid_file(data_dir)
    try:
        record = json.loads(record_file.read_text())
        pid = int(record["pid"])
        if pid <= 0:  # kill(-1) signals every process of the user, kill(0) our own group
            raise ValueError(f"pid {pid}")
    except (OSError, ValueError, KeyError, TypeError):
        print(f"clipascene-backend: no backend is running from {data_dir} (nothing recorded in "
              f"{record_file.name}).")
        return 0
    where = f"pid {pid}, http://{record.get('host', '127.0.0.1')}:{record.get('port', '?')}"
    if not _running(pid) or not _is_backend(pid):
        record_file.unlink(missing_ok=True)
        print(f"clipascene-backend: no backend is running from {data_dir} (the one recorded, "
              f"{where}, has exited).")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _running(pid):
        print(f"clipascene-backend: the backend ({where}) is still stopping after "
              f"{args.timeout:.0f} s; run this again, or end process {pid}.", file=sys.stderr)
        return 1
    record_file.unlink(missing_ok=True)
    print(f"clipascene-backend: stopped the backend ({where}).")
    return 0


def allowed_hosts(bound: str, token: str | None, public_names: list[str]) -> tuple[str, ...] | None:
    """The Host names requests may carry: against DNS rebinding, the loopback names and the
    bound address, plus --public-name. None (any name) only for a token-protected service
    without public names: there the token is what keeps other web pages out."""
    from .app import is_loopback
    from .guard import LOOPBACK_NAMES, host_name

    if token is not None and not public_names and not is_loopback(bound):
        return None
    names = [host_name(bound)] if bound not in ("0.0.0.0", "::") else []
    names += [host_name(name) for name in public_names]
    return tuple(dict.fromkeys([*names, *LOOPBACK_NAMES]))


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from clipascene_core.paths import data_dir as default_data_dir

    from .app import create_app, is_loopback
    from .settings import Settings
    from .storage import storage_problem
    from .store import StoreError

    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if not is_loopback(args.host) and not token:
        print(f"clipascene-backend: binding {args.host} exposes the service to the network; "
              f"give a token with --token or ${TOKEN_VARIABLE}.", file=sys.stderr)
        return 2
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        print(f"clipascene-backend: the token is {len(token)} characters long; use at least "
              f"{MIN_TOKEN_LENGTH} (e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe())'`).",
              file=sys.stderr)
        return 2
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    if args.data_dir is not None:
        os.environ["CLIPASCENE_DATA_DIR"] = str(data_dir)
    try:
        executor, devices = plan_executor(args)
    except RuntimeError as error:
        print(f"clipascene-backend: {error}", file=sys.stderr)
        return 2
    if not port_free(args.host, args.port):
        print(f"clipascene-backend: port {args.port} on {args.host} is in use — is the backend "
              "already running? Choose another with --port.", file=sys.stderr)
        return 3
    models = ModelSettings(args.clip_model, args.weights,
                           args.models_dir.expanduser().resolve() if args.models_dir else None,
                           args.precision)
    try:
        setup_logging(data_dir, args.log_level)
        app = create_app(Settings(data_dir=data_dir, devices=devices, models=models, token=token,
                                  allowed_hosts=allowed_hosts(args.host, token, args.public_name),
                                  executor=executor))
    except StoreError as error:
        print(f"clipascene-backend: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"clipascene-backend: {storage_problem(error, data_dir)}", file=sys.stderr)
        return 2
    logger.info("serving on http://%s:%d with workers on %s; data in %s", args.host, args.port,
                ", ".join(devices), data_dir)
    record_file = pid_file(data_dir)
    record_file.write_text(json.dumps({"pid": os.getpid(), "host": args.host, "port": args.port}))
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(),
                    log_config=None, timeout_graceful_shutdown=10)
    finally:
        try:
            if json.loads(record_file.read_text()).get("pid") == os.getpid():
                record_file.unlink()
        except (OSError, ValueError):
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "stop":
        return stop(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
