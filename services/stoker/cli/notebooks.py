"""`stoker notebooks run`: one notebook as a notebook job, over the HTTP API.

The notebook and what it ships with (`--dependency`, `--init-script`) are staged in
`<data dir>/notebook-inputs/<job id>/`, as the sagemaker SDK stages them for upload; the job
is the CreateTrainingJob request the SDK's NotebookJobStep compiles (`stoker.core.notebooks`),
submitted like any job, so it is launched, followed, retried and told about as one. Its
outputs (the executed notebook and every file it wrote) land in `--output`, by default
`<data dir>/outputs/jobs/<job id>/`. Staging is local: this runs notebooks on the local
backend of a stoker on this machine; for SageMaker, build the job with the SDK.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from stoker.adapters.training.notebook_inputs import stage_notebook_inputs
from stoker.cli.jobs import ApiUrl, Token, err
from stoker.client import DEFAULT_URL, ApiError, Client
from stoker.core.notebooks import NotebookJob, compile_notebook_job, name_problems
from stoker.lifecycle.jobs import InvalidJobSpec, parse_spec
from stoker.settings import Settings

app = typer.Typer(help="Run notebooks as jobs.", no_args_is_help=True)
console = Console()

LOCAL_IMAGE = "stoker-local"
LOCAL_ROLE = "arn:aws:iam::000000000000:role/stoker-local"


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            err.print(f"[red]{option} {value!r}: expected KEY=VALUE[/red]")
            raise typer.Exit(2)
        pairs[key] = rest
    return pairs


@app.command("run")
def run(
    notebook: Annotated[Path, typer.Argument(help="the .ipynb to run")],
    *,
    param: Annotated[
        list[str], typer.Option("--param", "-p", help="a parameter KEY=VALUE (repeat)")
    ] = [],  # noqa: B006 - typer reads the default; it is never mutated
    dependency: Annotated[
        list[str],
        typer.Option("--dependency", "-d", help="a file or folder shipped beside it (repeat)"),
    ] = [],  # noqa: B006
    env: Annotated[
        list[str], typer.Option("--env", "-e", help="an environment variable KEY=VALUE")
    ] = [],  # noqa: B006
    init_script: Annotated[
        Path | None, typer.Option(help="sourced by bash before the notebook runs")
    ] = None,
    kernel: Annotated[str, typer.Option(help="the Jupyter kernel")] = "python3",
    job_id: Annotated[str | None, typer.Option(help="default: a new one")] = None,
    output: Annotated[
        Path | None,
        typer.Option(help="where the outputs go (default: <data dir>/outputs/jobs/<job id>)"),
    ] = None,
    instance_type: Annotated[str, typer.Option()] = "ml.m5.large",
    max_runtime_s: Annotated[int, typer.Option(min=1)] = 2 * 24 * 3600,
    wait: Annotated[bool, typer.Option(help="wait for the job to end")] = False,
    api: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Run NOTEBOOK headless (papermill) as a notebook job of the local backend."""
    job_id = job_id or f"notebook-{uuid.uuid4().hex[:12]}"
    data_dir = Settings().data_dir.resolve()
    notebook_job = NotebookJob(
        input_notebook=str(notebook),
        image_uri=LOCAL_IMAGE,
        kernel_name=kernel,
        role=LOCAL_ROLE,
        notebook_job_name=job_id,
        parameters=_pairs(param, "--param"),
        environment_variables=_pairs(env, "--env"),
        initialization_script=str(init_script) if init_script else None,
        instance_type=instance_type,
        max_runtime_in_seconds=max_runtime_s,
        additional_dependencies=dependency,
    )
    problems = name_problems(notebook_job)
    if not notebook.is_file():
        problems["notebook"] = f"{notebook} is not a file"
    if problems:
        for field, problem in problems.items():
            err.print(f"[red]{field}: {problem}[/red]")
        raise typer.Exit(2)
    try:
        inputs = stage_notebook_inputs(notebook_job, data_dir / "notebook-inputs" / job_id)
    except FileNotFoundError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    outputs = (output or data_dir / "outputs" / "jobs" / job_id).resolve()
    request = compile_notebook_job(
        notebook_job, input_uri=str(inputs), output_uri=str(outputs), region="us-east-1"
    )
    try:
        spec = parse_spec({"job_id": job_id, "training": request})
    except InvalidJobSpec as exc:
        for field, problem in exc.problems.items():
            err.print(f"[red]{field}: {problem}[/red]")
        raise typer.Exit(2) from exc
    with Client(api, token=token) as client:
        try:
            result = client.submit(spec)
            job = client.wait(job_id) if wait else result.job
        except ApiError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    table = Table("job id", "status", "outputs", "failure reason")
    table.add_row(job.job_id, job.status.value, str(outputs), job.failure_reason or "")
    console.print(table)
    if wait and job.status.value != "Completed":
        raise typer.Exit(1)
