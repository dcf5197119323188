"""Which Maven Central artifacts make up each server, and the pom that fetches them. Pure."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape

KAFKA_VERSION = "3.9.1"
DYNAMODB_LOCAL_VERSION = "2.6.1"
# Pinned so every Maven installation resolves and copies dependencies the same way.
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

_NATIVE_SUFFIXES = (".so", ".dylib", ".dll")
# copy-dependencies names files artifactId-version.type; the JVM looks for the bare name.
_VERSIONED_NATIVE = re.compile(r"^(?P<stem>.+?)-\d+(?:\.\d+)*(?P<ext>\.(?:so|dylib|dll))$")


@dataclass(frozen=True)
class Coordinate:
    """groupId:artifactId:version[:type] of one Maven artifact."""

    group_id: str
    artifact_id: str
    version: str
    type: str = "jar"

    def __str__(self) -> str:
        return f"{self.group_id}:{self.artifact_id}:{self.version}:{self.type}"


@dataclass(frozen=True)
class Bundle:
    """The direct dependencies of one server; Maven resolves the rest."""

    name: str
    dependencies: tuple[Coordinate, ...]

    @property
    def digest(self) -> str:
        """Short content hash: a changed version set lands in a new cache folder."""
        text = "\n".join(str(c) for c in self.dependencies) + DEPENDENCY_PLUGIN_VERSION
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def folder_name(self) -> str:
        return f"{self.name}-{self.digest}"


KAFKA = Bundle(
    name="kafka",
    dependencies=(
        Coordinate("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
        # Kafka 3.x logs through slf4j 1.7 and log4j 1 (reload4j); this is the binding.
        Coordinate("org.slf4j", "slf4j-reload4j", "1.7.36"),
    ),
)

DYNAMODB_LOCAL = Bundle(
    name="dynamodb-local",
    dependencies=(Coordinate("com.amazonaws", "DynamoDBLocal", DYNAMODB_LOCAL_VERSION),),
)


def pom_xml(bundle: Bundle) -> str:
    """A throwaway project whose only purpose is `mvn dependency:copy-dependencies`."""
    deps = "\n".join(
        "    <dependency>\n"
        f"      <groupId>{escape(c.group_id)}</groupId>\n"
        f"      <artifactId>{escape(c.artifact_id)}</artifactId>\n"
        f"      <version>{escape(c.version)}</version>\n"
        + (f"      <type>{escape(c.type)}</type>\n" if c.type != "jar" else "")
        + "    </dependency>"
        for c in bundle.dependencies
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.stoker.infra</groupId>
  <artifactId>{escape(bundle.name)}</artifactId>
  <version>{bundle.digest}</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>{DEPENDENCY_PLUGIN_VERSION}</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""


def copy_dependencies_args(pom: str, output_dir: str) -> list[str]:
    """Arguments after `mvn`: runtime scope only, so test-only jars stay out."""
    return [
        "-B",
        "-q",
        "--no-transfer-progress",
        "-f",
        pom,
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}",
        "-DincludeScope=runtime",
    ]


def native_library_links(file_names: Iterable[str]) -> dict[str, str]:
    """Unversioned name -> versioned file, for every native library Maven copied."""
    links = {}
    for name in file_names:
        if not name.endswith(_NATIVE_SUFFIXES):
            continue
        match = _VERSIONED_NATIVE.match(name)
        if match is not None:
            links[match["stem"] + match["ext"]] = name
    return links


def classpath_jars(file_names: Iterable[str]) -> list[str]:
    """The jars among copied files, sorted so the classpath is the same on every run."""
    return sorted(name for name in file_names if name.endswith(".jar"))
