"""Parses compose.yaml and ops/k8s/*.yaml as YAML and checks their basic shape.

Run by ops/test with a Python that has PyYAML. Exits non-zero naming the file at fault.
"""
import pathlib
import sys

import yaml

root = pathlib.Path(__file__).resolve().parents[2]
failures = []

compose = yaml.safe_load((root / "compose.yaml").read_text())
wanted = {"certs", "vault-db", "api-db", "vault", "api", "otel-collector"}
missing = wanted - set(compose.get("services", {}))
if missing:
    failures.append(f"compose.yaml: services missing: {sorted(missing)}")
for name in ("vault", "api", "vault-db", "api-db"):
    if "healthcheck" not in compose["services"].get(name, {}):
        failures.append(f"compose.yaml: {name} has no healthcheck")

kinds = []
for path in sorted((root / "ops/k8s").glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is None:
            continue
        if "apiVersion" not in doc or "kind" not in doc:
            failures.append(f"{path.relative_to(root)}: a document without apiVersion/kind")
            continue
        kinds.append(doc["kind"])
for kind in ("Deployment", "StatefulSet", "HorizontalPodAutoscaler", "PodDisruptionBudget",
             "Service", "NetworkPolicy", "Certificate", "Cluster", "Kustomization"):
    if kind not in kinds:
        failures.append(f"ops/k8s: no {kind}")

if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"manifests parse: compose.yaml ({len(compose['services'])} services), ops/k8s ({len(kinds)} documents)")
