"""deploy/kubernetes and deploy/container hold together, and every study file in the repository loads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from daskopt.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
STUDY_FILES = sorted([*ROOT.glob("examples/*/study.toml"), *ROOT.glob("deploy/**/*.toml")])


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((KUBERNETES / name).read_text()) if doc]


def by_kind(name: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in documents(name)}


def scheduler_service() -> str:
    """``<cluster name>-scheduler``: the Service the Dask operator creates for a DaskCluster."""
    return by_kind("daskcluster.yaml")["DaskCluster"]["metadata"]["name"] + "-scheduler"


@pytest.mark.parametrize(
    ("name", "kinds"),
    [("daskcluster.yaml", ["DaskCluster"]), ("study-job.yaml", ["ConfigMap", "PersistentVolumeClaim", "Job"])],
)
def test_kubernetes_files_parse_with_expected_kinds(name: str, kinds: list[str]) -> None:
    docs = documents(name)
    assert [doc["kind"] for doc in docs] == kinds
    assert all(doc.get("apiVersion") and doc["metadata"].get("name") for doc in docs)


def test_daskcluster_has_gpu_cuda_workers_offering_gpu_slots() -> None:
    cluster = by_kind("daskcluster.yaml")["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    (scheduler,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    assert "scheduler" in scheduler["args"] and {p["containerPort"] for p in scheduler["ports"]} >= {8786, 8787}
    ports = {p["name"]: p["port"] for p in cluster["spec"]["scheduler"]["service"]["ports"]}
    assert ports["tcp-comm"] == 8786
    (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    args = worker["args"]
    assert args[:3] == ["dask", "cuda", "worker"]
    assert args[args.index("--resources") + 1] == "GPU_SLOT=1"
    assert args[args.index("--nthreads") + 1] == "1"  # threads = GPU slots: daskopt runs one trial per thread


def test_study_job_runs_daskopt_against_the_scheduler_service() -> None:
    kinds = by_kind("study-job.yaml")
    pod = kinds["Job"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    address = f"tcp://{scheduler_service()}:8786"
    assert container["args"] == ["run", "/study/study.toml", "--address", address]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/study"]]["configMap"]["name"] == kinds["ConfigMap"]["metadata"]["name"]
    claim = volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"]
    assert claim == kinds["PersistentVolumeClaim"]["metadata"]["name"]
    init = "\n".join(pod["initContainers"][0]["command"])
    assert f'("{scheduler_service()}", 8786)' in init


def test_study_in_the_configmap_loads_and_writes_to_the_volume(tmp_path: Path) -> None:
    data = by_kind("study-job.yaml")["ConfigMap"]["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    compile(data["objective.py"], "objective.py", "exec")
    spec = load_spec(tmp_path / "study.toml")
    assert spec.objective.callable == "objective:objective"
    assert spec.storage.url.startswith("journal:/data/")  # the ConfigMap mount is read-only
    assert str(spec.output.dir).startswith("/data/")
    assert spec.cluster.address == f"tcp://{scheduler_service()}:8786"


def test_images_agree() -> None:
    images = {
        c["image"]
        for name in ("daskcluster.yaml", "study-job.yaml")
        for doc in documents(name)
        for c in _containers(doc)
    }
    assert len(images) == 1, images


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "DaskCluster":
        return [*doc["spec"]["scheduler"]["spec"]["containers"], *doc["spec"]["worker"]["spec"]["containers"]]
    if doc["kind"] == "Job":
        pod = doc["spec"]["template"]["spec"]
        return [*pod.get("initContainers", []), *pod["containers"]]
    return []


def test_dockerfile_installs_daskopt_with_extras_and_runs_it() -> None:
    text = (ROOT / "deploy" / "container" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r'pip install "[^"]*\[\$\{EXTRAS\}\]"', text)
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    assert entrypoint and yaml.safe_load(entrypoint.group(1))[-1] == "daskopt"
    for copied in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for source in shlex.split(copied):
            assert (ROOT / source).exists(), f"COPY {source}: not in the build context (the repository root)"


@pytest.mark.parametrize("folder", ["slurm", "kubernetes", "container"])
def test_each_deploy_folder_has_a_readme(folder: str) -> None:
    assert (ROOT / "deploy" / folder / "README.md").is_file()


def test_deploy_material_has_no_machine_specific_paths() -> None:
    for path in (ROOT / "deploy").rglob("*"):
        if path.is_file():
            text = path.read_text()
            for local in (str(ROOT), "/work/", "/root/"):
                assert local not in text, f"{path.relative_to(ROOT)} mentions {local}"


@pytest.mark.parametrize("path", STUDY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_study_file_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.study.name
