"""What a local job leaves behind when it ends, copied where its request says.

- a training job: `/opt/ml/model` packed as `model.tar.gz` under
  `<S3OutputPath>/<job>/output/`, as SageMaker does, and `/opt/ml/output/data` (when it
  holds files) as `output.tar.gz` beside it, whether the job succeeded or failed; for a job
  of several hosts, each archive holds the union of the hosts' folders (SageMaker keeps the
  files of all hosts; scripts keep their names apart, and a later host's file wins over an
  earlier one's of the same name), packed from where the hosts wrote them;
- a notebook job (the SDK's NotebookJobStep request): the files in `/opt/ml/output/data`
  (the executed notebook and every file the notebook wrote), copied as they are under
  `S3OutputPath` itself, so a pipeline step's outputs read `<root>/<pipeline>/<execution>/
  <step>/...`; with no S3OutputPath, they stay in the job's folder;
- a processing job: each output's `LocalPath` uploaded to its `S3Uri`, from every host.

Destinations are S3 URIs, `file://` URIs or plain local paths.
"""

from __future__ import annotations

import asyncio
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

from stoker.adapters.training.container import JobPaths, LocalJobRequest, local_path
from stoker.adapters.training.hosts import host_paths
from stoker.adapters.training.s3io import S3Folders
from stoker.core.job_kind import JobKind

GZIP_LEVEL = 6
"""gzip's own default, what `tar czf` (and so SageMaker) packs with; Python's tarfile would
use 9, half again slower for a size within 1 % (a model's files are often compressed
already)."""


async def publish_model(s3: S3Folders, paths: JobPaths, spec: LocalJobRequest) -> str:
    """Pack the hosts' /opt/ml/model as model.tar.gz where OutputDataConfig says; returns
    its URI."""
    members = await asyncio.to_thread(_hosts_files, paths, spec, lambda own: own.model)
    await asyncio.to_thread(_pack, members, paths.artifacts)
    return await _publish(s3, paths.artifacts, spec)


async def publish_output_data(s3: S3Folders, paths: JobPaths, spec: LocalJobRequest) -> None:
    """Pack the hosts' /opt/ml/output/data as output.tar.gz beside the model, when they hold
    files."""
    members = await asyncio.to_thread(_hosts_files, paths, spec, lambda own: own.output_data)
    if members:
        archive = paths.artifacts.with_name("output.tar.gz")
        await asyncio.to_thread(_pack, members, archive)
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
    """Upload (or copy) each processing output's folder to its S3Uri, every host's in
    turn (a later host's file replaces an earlier one's of the same name)."""
    for output in spec.outputs:
        folder = local_path(output.uri)
        for host in spec.hosts:
            source = host_paths(paths, spec, host).root / output.source
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


def _hosts_files(
    paths: JobPaths, spec: LocalJobRequest, folder_of: Callable[[JobPaths], Path]
) -> dict[str, Path]:
    """Every file and folder under `folder_of` each host's paths, by its name in the
    archive; a later host's entry replaces an earlier one's of the same name."""
    members: dict[str, Path] = {}
    for host in spec.hosts:
        folder = folder_of(host_paths(paths, spec, host))
        if folder.is_dir():
            for path in folder.rglob("*"):
                members[path.relative_to(folder).as_posix()] = path
    return members


def _pack(members: dict[str, Path], archive: Path) -> None:
    """`members` (name in the archive: file or folder) as the gzipped tar `archive`, in
    name order."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz", compresslevel=GZIP_LEVEL) as tar:
        for name in sorted(members):
            tar.add(members[name], arcname=name, recursive=False)
