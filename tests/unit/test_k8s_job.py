"""The Kubernetes Indexed Job for a sweep: every object passes the API's strict schema (unknown fields fail),
the command expands the completion index, a retry is per shard, and bad arguments are refused by name."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
import yaml

from testbed.errors import ExitCode
from testbed.sweep.k8s import job_manifest, to_yaml

# 1.33: backoffLimitPerIndex is GA there; and the newest schema the installed kubernetes-validate bundles.
VERSIONS = ["1.33.0", kubernetes_validate.latest_version()]

SCENARIO = "name: office\ndescription: a small scenario\nvariants:\n  qos: {template: ef-priority}\n"
TEMPLATE = "classes:\n  - {name: voice, dscp: [EF], priority: 1}\n"
ARGS = dict(
    name="office-sweep",
    scenario_name="office",
    scenario_text=SCENARIO,
    templates={"ef-priority.yaml": TEMPLATE},
    image="registry.example.com/voip-testbed-node:0.1.0",
    shards=4,
    parallelism=2,
    retries=1,
    results_claim="testbed-results",
)


def manifest(**changes):
    return job_manifest(**(ARGS | changes))


def the_job(objects):
    (job,) = [o for o in objects if o["kind"] == "Job"]
    return job


def the_container(objects):
    (container,) = the_job(objects)["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("namespace", [None, "voip"])
def test_every_object_passes_the_strict_schema(version, namespace):
    objects = manifest(namespace=namespace, extra_args=["--repeat", "3"])
    assert [o["kind"] for o in objects] == ["ConfigMap", "Job"]
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    # and as printed: the YAML stream reads back to the same objects, the scenario as a block, without anchors
    text = to_yaml(objects)
    assert list(yaml.safe_load_all(text)) == objects
    assert "office.yaml: |\n    name: office\n" in text and "&id" not in text


@pytest.mark.parametrize(
    "break_it",
    [
        lambda job: job["spec"].update(completionz=4),  # an unknown key
        lambda job: job["spec"]["template"]["spec"]["containers"][0].update(privilidged=True),
        lambda job: job["spec"].update(completions="four"),  # a wrong type
        lambda job: job["spec"]["template"]["spec"]["containers"][0]["env"][0].pop("name"),  # a required field
    ],
)
def test_the_validation_can_fail(break_it):
    job = copy.deepcopy(the_job(manifest()))
    break_it(job)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, VERSIONS[-1], strict=True)


def test_the_command_expands_the_declared_completion_index():
    container = the_container(manifest(extra_args=["--repeat", "3"]))
    assert container["command"] == [
        "testbed",
        "sweep",
        "run",
        "/scenario/office.yaml",
        "--out",
        "/results/office-sweep/shard-$(JOB_COMPLETION_INDEX)",
        "--repeat",
        "3",
    ]
    env = {e["name"]: e for e in container["env"]}
    # Kubernetes expands $(VAR) only for variables in the container's env
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert env["TESTBED_SHARDS"]["value"] == "4"
    assert container["securityContext"] == {"privileged": True}
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "2Gi"}


def test_indexed_with_retries_per_shard():
    job = the_job(manifest())
    spec = job["spec"]
    # the schema has no enum for these, so the values are checked here
    assert spec["completionMode"] == "Indexed"
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert (spec["completions"], spec["parallelism"], spec["backoffLimitPerIndex"]) == (4, 2, 1)
    (ignore, fail_index) = spec["podFailurePolicy"]["rules"]
    assert ignore["action"] == "Ignore" and ignore["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert fail_index["onExitCodes"]["values"] == [ExitCode.BAD_INPUT]  # only a wrong scenario skips the retries
    assert "maxFailedIndexes" not in spec and "backoffLimit" not in spec  # one failing shard stops no other
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "voip-testbed"
    assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "voip-testbed"


def test_scenario_and_templates_share_one_volume():
    config_map, job = manifest()
    assert config_map["data"] == {"office.yaml": SCENARIO, "routers.ef-priority.yaml": TEMPLATE}
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["scenario"]["configMap"] == {
        "name": "office-sweep-scenario",
        "items": [
            {"key": "office.yaml", "path": "office.yaml"},
            {"key": "routers.ef-priority.yaml", "path": "routers/ef-priority.yaml"},
        ],
    }
    assert volumes["results"]["persistentVolumeClaim"] == {"claimName": "testbed-results"}
    mounts = {m["name"]: m["mountPath"] for m in the_container([job])["volumeMounts"]}
    assert mounts == {"scenario": "/scenario", "results": "/results"}


@pytest.mark.parametrize(
    ("changes", "argument"),
    [
        (dict(shards=0), r"shards must be an integer from 1 to 10000"),
        (dict(shards=10001), r"shards must be an integer from 1 to 10000"),
        (dict(shards=True), r"shards must be"),
        (dict(parallelism=5), r"parallelism must be an integer from 1 to 4"),
        (dict(parallelism=0), r"parallelism must be an integer from 1 to 4"),
        (dict(retries=-1), r"retries must be an integer from 0 to 100"),
        (dict(retries=101), r"retries must be an integer from 0 to 100"),
        (dict(name="Office_Sweep"), r"name must be a DNS-1123 label of 1 to 52 characters"),
        (dict(name="a" * 53), r"name must be a DNS-1123 label"),
        (dict(name=""), r"name must be a DNS-1123 label"),
        (dict(namespace="-voip"), r"namespace must be a DNS-1123 label"),
        (dict(results_claim="Results"), r"results_claim must be a DNS-1123 subdomain"),
        (dict(templates={"x.yaml": None}), r"templates must map file names to their text"),
        (dict(scenario_name="routers.x", templates={"x.yaml": TEMPLATE}), r"scenario_name 'routers.x' collides"),
        (dict(image=""), r"image must be a non-empty"),
        (dict(image="registry/node :1"), r"image must be a non-empty image reference without whitespace"),
        (dict(scenario_name="../office"), r"scenario_name must be a file name"),
        (dict(templates={"routers/x.yaml": TEMPLATE}), r"templates must be a file name"),
        (dict(scenario_text="  \n"), r"scenario_text must be"),
        (dict(extra_args=["--shard", "1/2"]), r"extra_args must not contain '--shard'"),
        (dict(extra_args=["--out=/tmp/x"]), r"extra_args must not contain '--out=/tmp/x'"),
        (dict(extra_args="--repeat 3"), r"extra_args must be a list of strings"),
        (dict(scenario_text="x" * (1024 * 1024)), r"must total less than 1 MiB"),
    ],
)
def test_bad_arguments_are_refused_by_name(changes, argument):
    with pytest.raises(ValueError, match=argument):
        manifest(**changes)


def test_the_largest_valid_plan_is_accepted():
    job = the_job(manifest(shards=10000, parallelism=10000, retries=100, name="a" * 52, results_claim="nfs.results"))
    kubernetes_validate.validate(job, VERSIONS[-1], strict=True)
