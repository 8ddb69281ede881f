"""`clipascene-backend serve`: run the local sketch service."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
from pathlib import Path

from clipascene_core.models import DEFAULT_CLIP_MODEL

from .worker import ModelSettings

logger = logging.getLogger("backend")
DEFAULT_PORT = 8765
TOKEN_VARIABLE = "CLIPASCENE_TOKEN"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipascene-backend",
                                     description="The local CLIPascene sketch service.")
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
                       help=f"require this token on every request (or set ${TOKEN_VARIABLE})")
    serve.add_argument("--clip-model", default=DEFAULT_CLIP_MODEL,
                       help="open_clip model name, or tiny-test (tiny random model for tests)")
    serve.add_argument("--weights", default="openai", help="openai, random, or a weights file")
    serve.add_argument("--models-dir", type=Path, default=None,
                       help="folder with the model weights (default: models/ in the data folder)")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    return parser


def expand_devices(requested: str) -> list[str]:
    """'auto' -> every CUDA GPU (one worker each), else mps, else cpu; a comma list as given."""
    import torch

    from clipascene_core.models import resolve_device

    if requested == "auto":
        if torch.cuda.is_available():
            return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
        return [str(resolve_device("auto"))]
    devices = [part.strip() for part in requested.split(",") if part.strip()]
    for device in devices:
        resolve_device(device)  # raises a clear error for a device this machine lacks
    return devices


def setup_logging(data_dir: Path, level: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr),
                                       logging.FileHandler(data_dir / "backend.log")]
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from clipascene_core.paths import data_dir as default_data_dir

    from .app import Settings, create_app, is_loopback

    token = args.token or os.environ.get(TOKEN_VARIABLE) or None
    if not is_loopback(args.host) and not token:
        print(f"clipascene-backend: binding {args.host} exposes the service to the network; "
              f"give a token with --token or ${TOKEN_VARIABLE}.", file=sys.stderr)
        return 2
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    if args.data_dir is not None:
        os.environ["CLIPASCENE_DATA_DIR"] = str(data_dir)
    try:
        devices = expand_devices(args.device)
    except RuntimeError as error:
        print(f"clipascene-backend: {error}", file=sys.stderr)
        return 2
    if not port_free(args.host, args.port):
        print(f"clipascene-backend: port {args.port} on {args.host} is in use — is the backend "
              "already running? Choose another with --port.", file=sys.stderr)
        return 3
    setup_logging(data_dir, args.log_level)
    models = ModelSettings(args.clip_model, args.weights,
                           args.models_dir.expanduser().resolve() if args.models_dir else None)
    app = create_app(Settings(data_dir=data_dir, devices=devices, models=models, token=token))
    logger.info("serving on http://%s:%d with workers on %s; data in %s", args.host, args.port,
                ", ".join(devices), data_dir)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(),
                timeout_graceful_shutdown=10)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
