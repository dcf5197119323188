"""`stoker endpoints`: serve every model under a prefix from one multi-model endpoint, and
print or apply the SageMaker requests that deploy the same prefix."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console

from stoker.core.errors import ConfigurationError, StokerError
from stoker.inference.fleet import FleetConfig
from stoker.inference.fleet.deployment import EndpointPlan
from stoker.logs import configure_logging
from stoker.settings import load_settings

app = typer.Typer(help="Multi-model endpoints: serve a model prefix, deploy it to SageMaker.")

MIB = 1024 * 1024
PrefixOpt = Annotated[
    str, typer.Option(help="where the models are: a local folder or s3://bucket/prefix/")
]
NameOpt = Annotated[str, typer.Option(help="the endpoint's name")]
EndpointUrlOpt = Annotated[
    str | None,
    typer.Option(help="AWS endpoint URL (S3 for serve, SageMaker for deploy), e.g. a local one"),
]


@app.command("serve")
def serve_cmd(
    *,
    prefix: PrefixOpt,
    name: NameOpt = "stoker-fleet",
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8080,
    memory_mb: Annotated[float, typer.Option(help="memory tier bound (MiB of models)")] = 512,
    disk_mb: Annotated[float, typer.Option(help="disk tier bound (MiB of artifacts)")] = 4096,
    cache_dir: Annotated[
        Path | None, typer.Option(help="disk tier folder (default: <data dir>/endpoint-cache)")
    ] = None,
    workers: Annotated[int, typer.Option(help="prediction processes")] = 2,
    max_batch: Annotated[
        int,
        typer.Option(
            min=1, help="predictions of one model that queued together run as one (at most)"
        ),
    ] = 8,
    preload: Annotated[
        list[str] | None, typer.Option(help="a model to load before serving (repeatable)")
    ] = None,
    endpoint_url: EndpointUrlOpt = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="serve without bearer tokens (loopback addresses only)"),
    ] = False,
) -> None:
    """Serve SageMaker's multi-model container API and the runtime InvokeEndpoint route."""
    import uvicorn

    from stoker.app.auth import router_authentication, router_rate_limiter
    from stoker.app.endpoint import build_endpoint, build_object_store

    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    if no_auth and not _loopback(host):
        message = f"--no-auth serves only on a loopback address, not {host!r}"
        raise typer.BadParameter(message, param_hint="--host")
    try:
        config = FleetConfig(
            cache_dir=cache_dir or settings.data_dir / "endpoint-cache",
            memory_bytes=int(memory_mb * MIB),
            disk_bytes=int(disk_mb * MIB),
            workers=workers,
            preload=tuple(preload or ()),
            max_batch=max_batch,
        )
        auth = None if no_auth else router_authentication(settings)
        store = build_object_store(prefix, settings, endpoint_url=endpoint_url)
    except (ValueError, ConfigurationError) as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    endpoint = build_endpoint(
        store,
        config,
        endpoint_name=name,
        auth=auth,
        rate_limiter=router_rate_limiter(settings),
    )
    uvicorn.run(endpoint, host=host, port=port, log_level="warning", access_log=False)


@app.command("deploy")
def deploy_cmd(
    *,
    prefix: PrefixOpt,
    image: Annotated[str, typer.Option(help="the serving container's image URI")],
    role_arn: Annotated[str, typer.Option(help="the role SageMaker reads the prefix with")],
    name: NameOpt = "stoker-fleet",
    instance_type: Annotated[str, typer.Option(help="instance type")] = "ml.c5.xlarge",
    instance_count: Annotated[int, typer.Option(help="instances")] = 1,
    apply: Annotated[bool, typer.Option("--apply", help="send the requests (else print)")] = False,
    endpoint_url: EndpointUrlOpt = None,
) -> None:
    """Print (or, with --apply, send) CreateModel (Mode MultiModel), CreateEndpointConfig and
    CreateEndpoint for the prefix."""
    try:
        plan = EndpointPlan(
            name=name,
            prefix=prefix,
            image=image,
            role_arn=role_arn,
            instance_type=instance_type,
            instance_count=instance_count,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    requests = plan.requests()
    if not apply:
        typer.echo(orjson.dumps(dict(requests), option=orjson.OPT_INDENT_2).decode())
        return
    from stoker.adapters.endpoint_deploy import apply as send

    settings = load_settings()
    try:
        answers = asyncio.run(send(plan, settings, endpoint_url=endpoint_url))
    except StokerError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    for (operation, _), answer in zip(requests, answers, strict=True):
        arn = next((v for k, v in answer.items() if k.endswith("Arn")), "")
        typer.echo(f"{operation}: {arn}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
