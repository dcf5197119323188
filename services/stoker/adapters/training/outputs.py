"""What a local job leaves behind when it ends, copied where its request says.

- a training job: `/opt/ml/model` packed as `model.tar.gz` under
  `<S3OutputPath>/<job>/output/`, as SageMaker does, and `/opt/ml/output/data` (when it
  holds files) as `output.tar.gz` beside it, whether the job succeeded or failed; for a job
  of several hosts, each folder is the union of the hosts' own (`hosts.merge_host_folders`);
- a notebook job (the SDK's NotebookJobStep request): the files in `/opt/ml/output/data`
  (the executed notebook and every file the notebook wrote), copied as they are under
  `S3OutputPath` itself, so a pipeline step's outputs read `<root>/<pipeline>/<execution>/
  <step>/...`; with no S3OutputPath, they stay in the job's folder;
- a processing job: each output's `LocalPath` uploaded to its `S3Uri`.

Destinations are S3 URIs, `file://` URIs or plain local paths.
"""

from __future__ import annotations

import asyncio
import shutil
import tarfile
from pathlib import Path

from stoker.adapters.training.container import JobPaths, LocalJobRequest, local_path
from stoker.adapters.training.s3io import S3Folders
from stoker.core.job_kind import JobKind


async def publish_model(s3: S3Folders, paths: JobPaths, spec: LocalJobRequest) -> str:
    """Pack /opt/ml/model as model.tar.gz where OutputDataConfig says; returns its URI."""
    await asyncio.to_thread(_pack, paths.model, paths.artifacts)
    return await _publish(s3, paths.artifacts, spec)


async def publish_output_data(s3: S3Folders, paths: JobPaths, spec: LocalJobRequest) -> None:
    """Pack /opt/ml/output/data as output.tar.gz beside the model, when it holds files."""
    has_files = await asyncio.to_thread(
        lambda: paths.output_data.is_dir() and any(paths.output_data.iterdir())
    )
    if has_files:
        archive = paths.artifacts.with_name("output.tar.gz")
        await asyncio.to_thread(_pack, paths.output_data, archive)
        await _publish(s3, archive, spec)


async def _publish(s3: S3Folders, archive: Path, spec: LocalJobRequest) -> str:
    """Copy `archive` to `<S3OutputPath>/<job>/output/`; returns its URI (the job folder's
    copy when the request has no S3OutputPath)."""
    output = spec.output_path
    if not output:
        return archive.as_uri()
    target = f"{output.rstrip('/')}/{spec.name}/output/{archive.name}"
    folder = local_path(output)
    if folder is None:
        await s3.upload_file(archive, target)
        return target
    dest = folder / spec.name / "output" / archive.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(shutil.copyfile, archive, dest)
    return dest.resolve().as_uri()


async def publish_notebook_outputs(s3: S3Folders, paths: JobPaths, spec: LocalJobRequest) -> str:
    """Copy a notebook job's output files under its S3OutputPath; returns where they are."""
    output = spec.output_path
    if not output:
        return paths.output_data.resolve().as_uri()
    folder = local_path(output)
    if folder is None:
        await s3.upload_folder(paths.output_data, output)
        return output.rstrip("/")
    await asyncio.to_thread(copy_tree, paths.output_data, folder)
    return folder.resolve().as_uri()


async def publish_processing_outputs(s3: S3Folders, paths: JobPaths, spec: LocalJobRequest) -> None:
    """Upload (or copy) each processing output's folder to its S3Uri."""
    for output in spec.outputs:
        source = paths.root / output.source
        folder = local_path(output.uri)
        if folder is None:
            await s3.upload_folder(source, output.uri)
        else:
            await asyncio.to_thread(copy_tree, source, folder)


async def publish_outputs(s3: S3Folders, paths: JobPaths, spec: LocalJobRequest) -> str | None:
    """A notebook job's files or a processing job's outputs, where the request says;
    returns where a notebook job's files went."""
    if spec.kind is JobKind.PROCESSING:
        await publish_processing_outputs(s3, paths, spec)
        return None
    return await publish_notebook_outputs(s3, paths, spec)


def copy_tree(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, dest, dirs_exist_ok=True)


def _pack(folder: Path, archive: Path) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
