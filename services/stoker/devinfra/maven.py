"""Fetch server artifacts from Maven Central into the cache with `mvn dependency:copy-dependencies`.

Each bundle lands in `<home>/lib/<name>-<digest>/` by an atomic rename, so a folder that
exists is complete and concurrent fetches by several processes cannot mix files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from stoker.core.errors import ConfigurationError
from stoker.devinfra.artifacts import Bundle, copy_dependencies_args, native_library_links, pom_xml
from stoker.devinfra.errors import FetchFailed

NATIVE_DIR = "native"
JAR_DIR = "jars"


def find_tool(name: str, home_env: str | None = None) -> str:
    """A tool from $<HOME_ENV>/bin (e.g. JAVA_HOME) or PATH, or a ConfigurationError."""
    if home_env and os.environ.get(home_env):
        candidate = Path(os.environ[home_env]) / "bin" / name
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(
            f"`{name}` was not found on PATH"
            + (f" nor in ${home_env}/bin" if home_env else "")
            + "; install it to run the development servers"
        )
    return found


def _fetch_sync(bundle: Bundle, home: Path, mvn: str, timeout_s: float) -> Path:
    target = home / "lib" / bundle.folder_name
    if target.is_dir():
        return target
    work = home / "build" / f"{bundle.folder_name}-{uuid.uuid4().hex[:8]}"
    jars = work / "out" / JAR_DIR
    work.mkdir(parents=True)
    try:
        pom = work / "pom.xml"
        pom.write_text(pom_xml(bundle))
        try:
            result = subprocess.run(
                [mvn, *copy_dependencies_args(str(pom), str(jars))],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise FetchFailed(
                f"mvn did not finish fetching {bundle.name} in {timeout_s:.0f} s"
            ) from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()[-30:]
            raise FetchFailed(
                f"mvn failed to fetch {bundle.name} (exit {result.returncode}):\n"
                + "\n".join(output)
            )
        native = work / "out" / NATIVE_DIR
        native.mkdir()
        for link, versioned in native_library_links(os.listdir(jars)).items():
            # A relative link keeps working after the folder is renamed into place.
            (native / link).symlink_to(Path("..") / JAR_DIR / versioned)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            (work / "out").rename(target)
        except OSError:
            # Another process renamed its copy first; its copy is as good as ours.
            if not target.is_dir():
                raise
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def fetch(bundle: Bundle, home: Path, *, timeout_s: float = 900.0) -> Path:
    """The bundle's folder (with `jars/` and `native/`), fetching it first if needed."""
    target = home / "lib" / bundle.folder_name
    if target.is_dir():
        return target
    mvn = find_tool("mvn", "MAVEN_HOME")
    return await asyncio.to_thread(_fetch_sync, bundle, home, mvn, timeout_s)


def jar_dir(bundle_dir: Path) -> Path:
    return bundle_dir / JAR_DIR


def native_dir(bundle_dir: Path) -> Path:
    return bundle_dir / NATIVE_DIR
