"""Entry point of the `stoker` command: one Typer app, one sub-app per area."""

from __future__ import annotations

import typer

from stoker.cli import (
    auth,
    demo,
    dev,
    endpoints,
    events,
    fleet,
    jobs,
    models,
    notebooks,
    pipeline_demo,
    pipelines,
    router,
    run,
    schemas,
    settings,
)

app = typer.Typer(
    name="stoker",
    help="Fire-and-forget ML training jobs and fast batched inference, driven by events.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(dev.app, name="dev")
app.add_typer(schemas.app, name="schemas")
app.add_typer(settings.app, name="settings")
app.add_typer(jobs.app, name="jobs")
app.add_typer(events.app, name="events")
app.add_typer(auth.app, name="auth")
app.add_typer(router.app, name="router")
app.add_typer(models.app, name="models")
app.add_typer(notebooks.app, name="notebooks")
app.add_typer(endpoints.app, name="endpoints")
app.add_typer(fleet.app, name="fleet")
pipelines.pipelines_app.command("demo")(pipeline_demo.demo)
app.add_typer(pipelines.pipelines_app, name="pipelines")
app.add_typer(pipelines.executions_app, name="executions")
app.add_typer(pipelines.schedules_app, name="schedules")
app.command("submit")(jobs.submit)
app.command("run")(run.run)
app.command("up")(run.up)
app.command("demo")(demo.demo)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
