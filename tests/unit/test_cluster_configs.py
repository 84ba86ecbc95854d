"""The files in cluster/ against Ray's own cluster-config schema and validator (what
``ray up`` and the autoscaler run), and the KubeRay manifest for what rayfn needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
LAUNCHER_FILES = sorted(p.name for p in CLUSTER.glob("*.yaml") if p.name != "kuberay.yaml")
CLOUDS = ["aws.yaml", "gcp.yaml"]
RAY_SCHEMA = Path(ray.autoscaler.__file__).with_name("ray-schema.json")


def load(name: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((CLUSTER / name).read_text())
    return config


def test_cluster_directory_has_every_config() -> None:
    assert set(LAUNCHER_FILES) == {"aws.yaml", "gcp.yaml", "local.yaml", "fake-multinode.yaml"}
    assert (CLUSTER / "kuberay.yaml").exists()
    assert (CLUSTER / "README.md").exists()


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_config_is_valid_for_ray(name: str) -> None:
    config = load(name)
    # The file as written: the schema forbids unknown keys, so a typo fails here.
    jsonschema.validate(config, json.loads(RAY_SCHEMA.read_text()))
    validate_config(config)
    if config["provider"]["type"] != "fake_multinode":  # Ray ships no defaults for it
        # What `ray up` checks: the file merged with the provider's defaults.
        validate_config(prepare_config(config))


def test_a_typo_fails_validation() -> None:
    config = load("aws.yaml")
    config["available_node_types"]["cpu.small"]["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_config(config)


@pytest.mark.parametrize("name", CLOUDS)
def test_cloud_configs_have_cpu_and_gpu_workers_and_start_rayfn_on_the_head(name: str) -> None:
    config = load(name)
    types = config["available_node_types"]
    head = types.pop(config["head_node_type"])
    assert head["resources"] == {"CPU": 0}  # calls go to workers, rayfn stays on the head
    assert isinstance(config["max_workers"], int) and config["max_workers"] > 0
    assert all(isinstance(t["max_workers"], int) and t["max_workers"] > 0
               for t in types.values())
    gpu = [t for t in types.values() if "gpu" in t.get("docker", {}).get("worker_image", "")]
    assert len(gpu) == 1 and len(types) - len(gpu) >= 1
    assert _installs_rayfn(config)
    assert any("rayfn start --address auto" in c for c in config["head_start_ray_commands"])
    images = [config["docker"]["image"], *(t["docker"]["worker_image"] for t in gpu)]
    assert all(f"rayproject/ray:{ray.__version__}-" in image for image in images)


def test_local_config_starts_rayfn_and_bounds_its_workers() -> None:
    config = load("local.yaml")
    assert config["max_workers"] == len(config["provider"]["worker_ips"])
    assert _installs_rayfn(config)
    assert any("rayfn start --address auto" in c for c in config["head_start_ray_commands"])


def test_fake_multinode_config_is_the_autoscaling_tests() -> None:
    config = load("fake-multinode.yaml")
    types = config["available_node_types"]
    assert types["ray.head.default"]["resources"] == {"CPU": 0}
    assert types["ray.worker.cpu"]["resources"]["CPU"] == 1
    assert types["ray.worker.cpu"]["max_workers"] == 3
    assert config["idle_timeout_minutes"] <= 0.2


def _installs_rayfn(config: dict[str, Any]) -> bool:
    synced = config["file_mounts"].get("~/rayfn-dist") == "./dist"
    return synced and any("rayfn-dist/rayfn-" in c and "pip install" in c
                          for c in config["setup_commands"])


# ---- KubeRay --------------------------------------------------------------------


def kuberay() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    documents = [d for d in yaml.safe_load_all((CLUSTER / "kuberay.yaml").read_text()) if d]
    cluster = next(d for d in documents if d["kind"] == "RayCluster")
    return cluster, documents


def _container(template: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = template["spec"]["containers"][0]
    return container


def _script(container: dict[str, Any]) -> str:
    return "\n".join([*container.get("command", []), *container.get("args", [])])


def test_kuberay_manifest_has_what_rayfn_needs() -> None:
    cluster, documents = kuberay()
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["rayVersion"] == ray.__version__
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    # Our command replaces KubeRay's, and must run the `ray start` KubeRay generates.
    assert cluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"

    head_group = spec["headGroupSpec"]
    assert head_group["rayStartParams"]["num-cpus"] == "0"
    head = _container(head_group["template"])
    script = _script(head)
    assert "$KUBERAY_GEN_RAY_START_CMD" in script
    assert "rayfn start --address auto" in script
    assert "pip install -q rayfn" in script
    assert any(p["containerPort"] == 8000 for p in head["ports"])

    # The state directory (store, REST token) is on a persistent volume claimed here.
    state_dir = next(e["value"] for e in head["env"] if e["name"] == "RAYFN_STATE_DIR")
    mount = next(m for m in head["volumeMounts"] if m["mountPath"] == state_dir)
    volume = next(v for v in head_group["template"]["spec"]["volumes"]
                  if v["name"] == mount["name"])
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim
               for d in documents)


def test_kuberay_workers_have_cpu_and_gpu_groups_that_install_rayfn() -> None:
    cluster, _ = kuberay()
    groups = cluster["spec"]["workerGroupSpecs"]
    gpu_groups = []
    for group in groups:
        assert 0 <= group["minReplicas"] <= group["maxReplicas"]
        worker = _container(group["template"])
        script = _script(worker)
        assert "$KUBERAY_GEN_RAY_START_CMD" in script and "pip install -q rayfn" in script
        assert f"rayproject/ray:{ray.__version__}-" in worker["image"]
        if "nvidia.com/gpu" in worker["resources"]["limits"]:
            gpu_groups.append(group)
    assert len(gpu_groups) == 1 and len(groups) >= 2
