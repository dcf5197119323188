"""`stoker models`: train the intent and duplicate heads, list versions, compare precisions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from stoker.core.errors import StokerError

app = typer.Typer(
    help="Inference models: train heads on the MiniLM backbone, list versions, compare "
    "compile precisions.",
    no_args_is_help=True,
)
_console = Console()

ModelsDir = Annotated[
    Path | None,
    typer.Option(help="Where versions are saved; default <STOKER_DATA_DIR>/models."),
]


def _models_dir(given: Path | None) -> Path:
    from stoker.app.inference_registry import models_dir_of
    from stoker.inference.config import load_inference_settings

    return given if given is not None else models_dir_of(load_inference_settings())


@app.command("train-heads")
def train_heads(
    *,
    models_dir: ModelsDir = None,
    intent_examples: Annotated[int, typer.Option(min=20)] = 2000,
    pair_examples: Annotated[int, typer.Option(min=20)] = 2000,
    holdout: Annotated[float, typer.Option(min=0.05, max=0.5)] = 0.2,
    seed: int = 7,
    hidden: Annotated[int, typer.Option(min=0, help="MLP width; 0 = logistic")] = 64,
    epochs: Annotated[int, typer.Option(min=1)] = 150,
) -> None:
    """Fit both heads on generated data, save new versions, report held-out metrics."""
    from stoker.inference import artifacts, training
    from stoker.inference.backbone import backbone_id, load_backbone, shipped_backbone
    from stoker.inference.tokenizer import WordPieceTokenizer

    target = _models_dir(models_dir)
    try:
        cfg = training.TrainConfig(
            intent_examples=intent_examples,
            pair_examples=pair_examples,
            holdout_fraction=holdout,
            seed=seed,
            hidden=hidden,
            epochs=epochs,
        )
        files = shipped_backbone()
        backbone = load_backbone(files)
        tokenizer = WordPieceTokenizer(files.tokenizer)
        with _console.status("embedding generated data and fitting heads"):
            trained = training.train_heads(backbone, tokenizer, cfg)
        saved = [
            artifacts.save_head(target, head, backbone_id(files), cfg) for head in trained.values()
        ]
    except (StokerError, ValueError) as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc

    table = Table(title=f"held-out metrics ({backbone_id(files)})")
    for column in ("model", "version", "accuracy", "macro F1", "train", "held out", "path"):
        table.add_column(column)
    for artifact in saved:
        m = artifact.metadata.metrics
        table.add_row(
            artifact.metadata.name,
            f"v{artifact.metadata.version:04d}",
            f"{m.accuracy:.4f}",
            f"{m.macro_f1:.4f}",
            str(m.n_train),
            str(m.n_heldout),
            str(artifact.path),
        )
    _console.print(table)
    per_label = Table(title="held-out F1 per label")
    per_label.add_column("model")
    per_label.add_column("label")
    per_label.add_column("F1")
    for artifact in saved:
        for label, f1 in artifact.metadata.metrics.per_label_f1.items():
            per_label.add_row(artifact.metadata.name, label, f"{f1:.4f}")
    _console.print(per_label)


@app.command("list")
def list_versions(models_dir: ModelsDir = None) -> None:
    """Saved head versions with their held-out metrics."""
    from stoker.inference.artifacts import load_head, versions
    from stoker.ports.inference import ModelName

    target = _models_dir(models_dir)
    table = Table(title=f"heads in {target}")
    for column in ("model", "version", "created", "accuracy", "macro F1", "backbone"):
        table.add_column(column)
    names: tuple[ModelName, ...] = ("intent", "duplicate")
    for name in names:
        for version in versions(target, name):
            meta = load_head(target, name, version).metadata
            table.add_row(
                name,
                f"v{version:04d}",
                meta.created_at,
                f"{meta.metrics.accuracy:.4f}",
                f"{meta.metrics.macro_f1:.4f}",
                meta.backbone_id,
            )
    _console.print(table)


@app.command("precision")
def precision(
    model: Annotated[str, typer.Argument(help="intent | duplicate")] = "duplicate",
    models_dir: ModelsDir = None,
    threads: Annotated[int, typer.Option(min=1)] = 2,
) -> None:
    """Held-out accuracy of every CPU variant against fp32 TorchScript, on the saved head."""
    from stoker.app.evaluation import cpu_precision_report

    try:
        results = cpu_precision_report(model, _models_dir(models_dir), threads=threads)
    except (StokerError, ValueError) as exc:
        _console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    table = Table(title=f"{model}: accuracy change against fp32 (held-out set)")
    for column in ("variant", "accuracy", "macro F1", "change", "agreement", "max |dp|"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.variant,
            f"{r.metrics.accuracy:.4f}",
            f"{r.metrics.macro_f1:.4f}",
            f"{r.accuracy_change:+.4f}",
            f"{r.agreement:.4f}",
            f"{r.max_prob_diff:.2e}",
        )
    _console.print(table)
