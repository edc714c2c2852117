"""deploy/kuberay/rayjob.yaml passes the RayJob CRD's own OpenAPI schema, keeps the token in a
Secret, and runs a command this project accepts on a spec it ships.

tests/data/kuberay/ray.io_rayjobs.yaml.gz is the CRD of ray-project/kuberay
(ray-operator/config/crd/bases/ray.io_rayjobs.yaml at commit feeaf72f, Apache-2.0), unchanged.
"""

from __future__ import annotations

import copy
import gzip
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

from sweeps.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "deploy" / "kuberay" / "rayjob.yaml"
CRD = ROOT / "tests" / "data" / "kuberay" / "ray.io_rayjobs.yaml.gz"
IMAGE_ROOT = "/home/ray/diloco-sweep/"  # where deploy/kuberay/Dockerfile puts this checkout


def _strict(schema: dict) -> dict:
    """The CRD schema as the API server applies it with strict field validation (kubectl's
    default): an object that lists its properties takes no others, so a typo is refused."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is 1.4 MB of YAML
    crd = yaml.load(gzip.decompress(CRD.read_bytes()), Loader=loader)
    assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == "RayJob"
    version = next(v for v in crd["spec"]["versions"] if v["storage"])
    assert version["name"] == "v1" and version["served"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


@pytest.fixture()
def job() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_the_manifest_passes_the_rayjob_schema(validator, job):
    errors = sorted(validator.iter_errors(job), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")


@pytest.mark.parametrize("break_it,where", [
    (lambda j: j["spec"].__setitem__("shutdownAfterJobFinish", True), "shutdownAfterJobFinish"),
    (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].__setitem__("replicas", "one"),
     "replicas"),
    (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"].pop("template"), "template"),
])
def test_the_schema_catches_mistakes(validator, job, break_it, where):
    break_it(job)
    errors = list(validator.iter_errors(job))
    assert errors and any(where in e.message or where in map(str, e.path) for e in errors)


def test_cluster_goes_away_when_the_job_ends_and_trials_get_gpus(job):
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no trial on the head
    (gpu,) = cluster["workerGroupSpecs"]
    (worker,) = gpu["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["minReplicas"] == 0 < gpu["maxReplicas"] and cluster["enableInTreeAutoscaling"]
    constraints = (ROOT / "constraints.txt").read_text()
    assert f"ray=={cluster['rayVersion']}" in constraints
    docker = (ROOT / "deploy" / "kuberay" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{cluster['rayVersion']}-" in docker
    assert IMAGE_ROOT.rstrip("/") in docker


def _containers(job: dict) -> list[dict]:
    spec = job["spec"]
    groups = [spec["rayClusterSpec"]["headGroupSpec"], *spec["rayClusterSpec"]["workerGroupSpecs"],
              spec]
    pods = [g["template"]["spec"] for g in groups[:-1]] + [spec["submitterPodTemplate"]["spec"]]
    return [c for p in pods for c in p["containers"]]


def test_every_ray_container_takes_the_token_from_the_secret(job):
    containers = _containers(job)
    assert len(containers) == 3  # head, GPU worker, submitter
    for c in containers:
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token", c["name"]
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "diloco-sweep-ray-token", "key": "auth_token"}, c["name"]
        assert "value" not in env["RAY_AUTH_TOKEN"]
    assert "kubectl create secret generic diloco-sweep-ray-token" in MANIFEST.read_text()


def _entrypoint(job: dict):
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "sweeps"]  # python -m sweeps is diloco-sweep
    return build_parser(argv[3:]).parse_args(argv[3:])


def test_the_entrypoint_runs_a_shipped_spec_to_s3(job, capsys):
    args = _entrypoint(job)
    assert args.command == "run" and args.output.startswith("s3://")
    assert args.spec.startswith(IMAGE_ROOT)
    local = ROOT / args.spec.removeprefix(IMAGE_ROOT)
    assert main(["check", str(local)]) == 0
    out = capsys.readouterr().out
    assert "# 300 trials" in out and "GPU-hours" in out
    # each trial's resources fit one GPU worker pod
    resources = yaml.safe_load(local.read_text())["resources"]
    limits = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"][
        "containers"][0]["resources"]["limits"]
    assert resources["gpu"] <= int(limits["nvidia.com/gpu"])
    assert resources["cpu"] <= int(limits["cpu"])


def test_an_entrypoint_naming_a_missing_spec_is_refused(job, capsys):
    job["spec"]["entrypoint"] = job["spec"]["entrypoint"].replace("paper_lm", "paper_lmm")
    args = _entrypoint(job)
    assert main(["check", str(ROOT / args.spec.removeprefix(IMAGE_ROOT))]) == 2
    assert "cannot read the spec file" in capsys.readouterr().err
