"""A sweep as a Kubernetes Indexed Job: one pod per shard, each writing its own directory of one shared volume.

Pure: builds plain dicts (a ConfigMap and a ``batch/v1`` Job) from the scenario's text, so it needs no cluster,
no lab and no Kubernetes client; ``to_yaml`` prints them for ``kubectl apply -f``. Afterwards
``testbed merge /results/NAME/shard-*`` joins the shards.

Why privileged rather than NET_ADMIN + SYS_ADMIN: the netns backend creates network namespaces (``ip netns``
bind-mounts them under /run/netns: mount needs SYS_ADMIN), veths, tc qdiscs and iptables/nftables rules
(NET_ADMIN), and writes per-namespace sysctls through /proc/sys, which runtimes mount read-only in unprivileged
containers. The default seccomp and AppArmor profiles block mount and unshare too; once they are lifted and
SYS_ADMIN granted, the pod is privileged in all but name, so the manifest says so plainly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

BAD_INPUT = 2  # testbed.errors.ExitCode.BAD_INPUT (not imported: this module needs nothing of the testbed)
LABELS = {"app.kubernetes.io/name": "voip-testbed"}
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
TTL_AFTER_FINISHED = 7 * 24 * 3600  # the Job's pods (their logs) stay a week; the results live on the claim
CONFIGMAP_LIMIT = 1024 * 1024  # etcd's limit on one object
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_NAMES = {  # kind: (pattern, what it allows)
    "label": (re.compile(rf"^{_LABEL}$"), "lower-case letters, digits and '-'"),
    "subdomain": (re.compile(rf"^{_LABEL}(\.{_LABEL})*$"), "lower-case letters, digits, '-' and '.'"),
}
_FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # a ConfigMap key, and a file name the scenario can refer to


def _check_range(argument: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{argument} must be an integer from {low} to {high}, not {value!r}")


def _check_name(argument: str, value: str, longest: int, kind: str = "label") -> None:
    pattern, allowed = _DNS_NAMES[kind]
    if not isinstance(value, str) or len(value) > longest or not pattern.match(value):
        raise ValueError(
            f"{argument} must be a DNS-1123 {kind} of 1 to {longest} characters ({allowed}, starting and ending "
            f"with a letter or digit), not {value!r}"
        )


def _check_file_name(argument: str, value: str) -> None:
    if not isinstance(value, str) or not _FILE_NAME.match(value) or value in (".", ".."):
        raise ValueError(f"{argument} must be a file name of letters, digits, '_', '.' and '-', not {value!r}")


def job_manifest(
    *,
    name: str,
    scenario_name: str,
    scenario_text: str,
    templates: Mapping[str, str],
    image: str,
    shards: int,
    parallelism: int,
    retries: int,
    results_claim: str,
    namespace: str | None = None,
    extra_args: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The ConfigMap (scenario and router templates) and the Indexed Job that runs ``shards`` shards of the sweep.

    ``templates`` maps a router template's file name (``ef-priority.yaml``) to its text; the pod sees the scenario
    at ``/scenario/SCENARIO.yaml`` and the templates in ``/scenario/routers/``, where the loader looks first.
    Raises ValueError naming the argument and what it allows.
    """
    _check_name("name", name, 52)  # a pod's hostname is NAME-INDEX, and a hostname has at most 63 characters
    if namespace is not None:
        _check_name("namespace", namespace, 63)
    _check_name("results_claim", results_claim, 253, "subdomain")
    _check_file_name("scenario_name", scenario_name)
    for file, text in templates.items():
        _check_file_name("templates", file)
        if not isinstance(text, str):
            raise ValueError(f"templates must map file names to their text, not {file!r} to {type(text).__name__}")
    if not isinstance(image, str) or not image or any(c.isspace() for c in image):
        raise ValueError(f"image must be a non-empty image reference without whitespace, not {image!r}")
    _check_range("shards", shards, 1, 10000)
    _check_range("parallelism", parallelism, 1, shards)
    _check_range("retries", retries, 0, 100)
    if not isinstance(scenario_text, str) or not scenario_text.strip():
        raise ValueError("scenario_text must be the scenario's YAML, not empty")
    if isinstance(extra_args, str) or not all(isinstance(a, str) for a in extra_args):
        raise ValueError(f"extra_args must be a list of strings, not {extra_args!r}")
    for arg in extra_args:
        if arg.split("=")[0] in ("--shard", "--out"):  # every pod would run the same shard, or share a directory
            raise ValueError(f"extra_args must not contain {arg!r}: the Job sets the shard and the output directory")

    scenario_key = f"{scenario_name}.yaml"
    # A ConfigMap key cannot hold '/': templates get a 'routers.' prefix, and items put them under routers/.
    files = {scenario_key: scenario_text} | {f"routers.{file}": text for file, text in templates.items()}
    if len(files) != 1 + len(templates):
        raise ValueError(f"scenario_name {scenario_name!r} collides with a template's key in the ConfigMap")
    size = sum(len(k) + len(v.encode()) for k, v in files.items())
    if size > CONFIGMAP_LIMIT - 4096:  # some room for the object's metadata
        raise ValueError(f"scenario_text and templates must total less than 1 MiB for a ConfigMap, not {size} bytes")
    items = [{"key": scenario_key, "path": scenario_key}]
    items += [{"key": f"routers.{file}", "path": f"routers/{file}"} for file in sorted(templates)]

    labels = LABELS | {"app.kubernetes.io/instance": name}

    def metadata(object_name: str) -> dict[str, Any]:
        where = {"namespace": namespace} if namespace is not None else {}
        return {"name": object_name, "labels": dict(labels)} | where

    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(f"{name}-scenario"), "data": files}
    container = {
        "name": "testbed",
        "image": image,
        "command": ["testbed", "sweep", "run", f"/scenario/{scenario_key}"]
        + ["--out", f"/results/{name}/shard-$(JOB_COMPLETION_INDEX)", *extra_args],
        # $(VAR) in a command expands only variables the container declares; the CLI reads both as its shard.
        "env": [
            {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}},
            },
            {"name": "TESTBED_SHARDS", "value": str(shards)},
        ],
        # Two whole cores: a call's pacing (20 ms packets, the jitter buffer) needs its cores on time, and a pod
        # runs its trials one at a time. No CPU limit: CFS throttling would stall the pacing mid-call.
        "resources": {"requests": {"cpu": "2", "memory": "2Gi"}},
        "securityContext": {"privileged": True},  # why not capabilities: the module's docstring
        "volumeMounts": [
            {"name": "scenario", "mountPath": "/scenario", "readOnly": True},
            {"name": "results", "mountPath": "/results"},
        ],
    }
    pod_spec = {
        "restartPolicy": "Never",  # required by backoffLimitPerIndex: a retry is a new pod, counted per index
        "containers": [container],
        "volumes": [
            {"name": "scenario", "configMap": {"name": f"{name}-scenario", "items": items}},
            # ReadWriteMany: every shard writes its own /results/NAME/shard-I at the same time.
            {"name": "results", "persistentVolumeClaim": {"claimName": results_claim}},
        ],
    }
    job_spec = {
        "completionMode": "Indexed",
        "completions": shards,
        "parallelism": parallelism,
        # Retries per shard; maxFailedIndexes unset, so a failing shard never stops the others.
        "backoffLimitPerIndex": retries,
        "podFailurePolicy": {
            "rules": [
                # A drained or preempted node is not the shard's fault: retry without spending a retry.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                # A wrong scenario fails again on every retry (other failures may be the node's: retried).
                {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [BAD_INPUT]}},
            ]
        },
        "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata(name), "spec": job_spec}
    return [config_map, job]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the scenario, the templates) as ``|`` blocks, so job.yaml shows them as written."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # no &id001 anchors: every object is written out in full


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def to_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """The objects as one multi-document YAML stream, keys in the order built, for ``kubectl apply -f``."""
    return yaml.dump_all([dict(o) for o in objects], Dumper=_Dumper, sort_keys=False, allow_unicode=True)
