"""`python -m stoker.simulator`: serve the SageMaker-API simulator until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from stoker.logs import configure_logging
from stoker.simulator.faults import FaultConfig
from stoker.simulator.server import SimulatorServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stoker.simulator", description="SageMaker-API simulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--faults", type=Path, help="fault config file (JSON or YAML)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--speedup", type=float, help="simulated seconds per wall second")
    parser.add_argument("--duration-s", type=float, help="fixed training duration")
    parser.add_argument("--instant", action="store_true", help="jobs end when created")
    parser.add_argument("--capacity-error-rate", type=float)
    parser.add_argument("--algorithm-error-rate", type=float)
    parser.add_argument("--throttle-rps", type=float)
    parser.add_argument(
        "--quota",
        action="append",
        default=[],
        metavar="TYPE=N",
        help="instances of TYPE that may run at once (repeatable)",
    )
    return parser.parse_args(argv)


def fault_config(args: argparse.Namespace) -> FaultConfig:
    """The file's config with the flags given on the command line applied over it."""
    base = FaultConfig.from_file(args.faults) if args.faults else FaultConfig()
    data: dict[str, Any] = base.model_dump()
    for flag, key in (
        ("seed", "seed"),
        ("speedup", "speedup"),
        ("capacity_error_rate", "capacity_error_rate"),
        ("algorithm_error_rate", "algorithm_error_rate"),
        ("throttle_rps", "throttle_rps"),
    ):
        if getattr(args, flag) is not None:
            data[key] = getattr(args, flag)
    if args.instant:
        data["duration"] = {"kind": "instant"}
    elif args.duration_s is not None:
        data["duration"] = {"kind": "fixed", "seconds": args.duration_s}
    for item in args.quota:
        instance_type, _, count = str(item).partition("=")
        if not count.isdigit():
            raise SystemExit(f"--quota expects TYPE=N, got {item!r}")
        data["instance_quota"][instance_type] = int(count)
    return FaultConfig.model_validate(data)


async def serve(args: argparse.Namespace) -> None:
    server = SimulatorServer(fault_config(args), host=args.host, port=args.port)
    await server.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> None:
    configure_logging()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
