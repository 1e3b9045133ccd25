"""The IAM roles of docs/adopting.md, proven on the local cloud with IAM enforced (docs/local-cloud.md, IAM
enforcement): every step the workflows run is run as the role they give it, an IAM user with exactly that role's
policy from iam/*.json, real Packer included; then, for every action a policy allows, a run without it fails at a
step that needs it, or iam/needs.json says when it is needed and why no local run reaches it.

What moto 5.2.5 checks of a policy, and so what is proven here: the actions, always; the resources of S3 (bucket
and key) and of sts:AssumeRole (the role's ARN), which stay as written. It evaluates no condition (`Null`, and keys
such as `ec2:ResourceTag/…`, `aws:RequestTag/…`, `ec2:CreateAction`, are never given to it: it ignores the operators
it does not know and passes those it knows with nothing to compare), and gives EC2, SSM, SNS, EventBridge, KMS and
Auto Scaling calls the resource `*`, which no ARN pattern matches. So policies are loaded in their `moto_form`:
conditions dropped, resources of those services `*`. The scoping is proven on AWS only.

Steps run in this process (`stamp.cli.main`), each with the role's keys in STAMP_LOCAL_CREDENTIALS=env; a step
passes when it exits as the workflow expects it to (0; 3 for the build that fails on purpose) and nothing it
printed, Packer's log included, is a refusal. The necessity check reruns only the steps of one role, from a state
the pipeline prepared once: the plan on the recorded catalog; the child layer of the build role (its record, build
and verify, and a failing sibling's build); the publish role's steps on fresh copies of the AMIs (`mint`), so that
every call they make happens again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from stamp import local
from stamp.catalog.load import load_catalog
from stamp.cli import main
from stamp.commands import iam
from stamp.commands.record import WORKSPACE_MARKER
from stamp.hosts.base import BuildMachine
from stamp.hosts.local import LocalTarget
from stamp.hosts.target import seeds_for
from stamp.local.credentials import BUILTIN_KEYS, CREDENTIALS_ENV, IAM_ENV
from stamp.tags import BUILD_ID_TAG, DESCRIPTION_TAG, IMAGE_TAG, SOURCE_AMI_TAG, VERIFIED_TAG

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
# moto's account for every key it does not know otherwise: the publishing account.
ACCOUNT = "123456789012"
CONSUMER = "444455556666"
VENDOR = "136693071363"
REGIONS = ("us-east-1", "eu-west-1")
BUCKET = "stamp-iam-artifacts"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:stamp-releases"
# A build ID of long ago: the janitor's leftovers, and base's release before the pipeline.
OLD_BASE_BUILD = "base-20261101100000-0a0a0a"
LEFTOVER_BUILD = "web-20261101100000-0d0d0d"
# The key pair a killed build leaves: imported, as a build imports its throwaway ed25519 key (CreateKeyPair would have
# moto make an RSA key each time the necessity check sets the leftovers out again).
LEFTOVER_KEY = (
    ed25519.Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
)
# What moto and stamp print for a refused call, for every service (S3 says only "Access Denied").
# HeadObject's refusal has no body: stamp names the permission in its hint.
DENIED = re.compile(
    r"not authorized to perform: [\w-]+:\w+|UnauthorizedOperation|AccessDenied|Access Denied|they allow [\w-]+:\w+"
)
# The action a refusal names: moto's own message, or stamp's hint for the calls whose refusal names none (S3's).
NAMED = re.compile(r"(?:not authorized to perform: |they allow )([\w-]+:\w+)")

CATALOG = """\
version: 1
defaults:
  regions: [us-east-1, eu-west-1]
  instance_type: t3.micro
  ssh_username: admin
  retention: {{keep: 1, grace_days: 0}}
  rebuild: {{on_new_source: true}}
  artifacts: {{bucket: {bucket}, prefix: golden-images}}
  consumers: {{role: "arn:aws:iam::{{account}}:role/stamp-consumer"}}
  notify:
    sns: ["{topic}"]
    eventbridge: {{bus: default}}
images:
  base:
    description: the root image, from the vendor image
    source: {{filter: {{name: "{pattern}", owners: ["{vendor}"]}}}}
    provision: [images/base/no-apt-sources.sh]
    tests: images/base/tests
    share: {{accounts: ["{consumer}"]}}
  web:
    description: built from base
    parent: base
    tests: images/web/tests
    share: {{accounts: ["{consumer}"], copy_accounts: ["{consumer}"]}}
    channels: {{candidate: {{}}}}
  broken:
    description: a build that fails, as one of a layer may
    parent: base
    provision: [images/broken/fail.sh]
releases:
  base:
    - version: 1
      amis: {{us-east-1: {east}, eu-west-1: {west}}}
      built_at: "2026-11-01T10:00:00Z"
      commit: 1a2b3c4d5e6f
      build_id: {old_build}
      source: {{amis: {{us-east-1: ami-0aaaaaaaaaaaaaaaa}}}}
      verified: passed
      status: current
"""

# No apt sources in the images: the plan's update check then reads each inventory from S3 (the plan role's
# s3:GetObject) and asks no Debian mirror about it.
NO_APT_SOURCES = "#!/usr/bin/env bash\nset -euo pipefail\nrm -f /etc/apt/sources.list /etc/apt/sources.list.d/*\n"
IMAGE_TEST = 'def test_the_image_boots(host):\n    assert host.file("/etc/os-release").exists\n'


@dataclass(frozen=True)
class Step:
    """A command as a workflow runs it, and its exit code; `logs` are files under the workspace whose text counts
    as its output."""

    role: str
    argv: tuple[str, ...]
    logs: tuple[str, ...] = ()
    exit: int = 0

    @property
    def name(self) -> str:
        """The command line as the table shows it: without the reasons' text."""
        words = [w for i, w in enumerate(self.argv) if i == 0 or self.argv[i - 1] != "--reason"]
        return "stamp " + " ".join(w for w in words if w != "--reason") + (" (fails)" if self.exit else "")


@dataclass(frozen=True)
class Ran:
    step: Step
    code: int
    output: str
    seconds: float

    @property
    def refusals(self) -> list[str]:
        return sorted(set(DENIED.findall(self.output)))

    @property
    def refused_actions(self) -> set[str]:
        return set(NAMED.findall(self.output))

    @property
    def passed(self) -> bool:
        return self.code == self.step.exit and not self.refusals

    def why(self) -> str:
        return (
            f"{self.step.name} (as {self.step.role}): exit {self.code}, refused {self.refusals}\n{self.output[-3000:]}"
        )


def moto_form(policy: Mapping[str, Any]) -> dict[str, Any]:
    """`policy` as moto can evaluate it (module docstring): no conditions; resource `*` but for S3 and STS."""
    statements = []
    for statement in policy["Statement"]:
        kept = {key: value for key, value in statement.items() if key != "Condition"}
        if not all(action.startswith(("s3:", "sts:")) for action in actions_of(statement)):
            kept["Resource"] = "*"
        statements.append(kept)
    return {**policy, "Statement": statements}


def actions_of(statement: Mapping[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def allowed(policy: Mapping[str, Any]) -> list[str]:
    """Every action the policy allows, in the order it names them."""
    found: dict[str, None] = {}
    for statement in policy["Statement"]:
        if statement["Effect"] == "Allow":
            found |= dict.fromkeys(actions_of(statement))
    return list(found)


def without(policy: Mapping[str, Any], action: str) -> dict[str, Any]:
    """`policy` allowing everything it allows but `action` (its denials stay)."""
    statements = []
    for statement in policy["Statement"]:
        if statement["Effect"] == "Allow" and action in actions_of(statement):
            rest = [a for a in actions_of(statement) if a != action]
            if not rest:
                continue
            statement = {**statement, "Action": rest}
        statements.append(statement)
    return {**policy, "Statement": statements}


def policies(catalog_path: Path) -> dict[str, dict[str, Any]]:
    """Each role's permission policy from iam/*.json, filled for the test catalog, in moto's form."""
    catalog = load_catalog(catalog_path)
    values = iam.values_for(catalog, account=ACCOUNT, repository="example-org/images")
    return {role: moto_form(iam.policy(REPO, role, values)) for role in iam.ROLES}


@contextlib.contextmanager
def environment(**changes: str | None) -> Iterator[None]:
    before = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Admin:
    """The local cloud's own keys (allowed everything, as an account's root user), for what the test sets up."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        # A client takes tens of milliseconds to make, and the necessity check sets policies and mints AMIs ~60 times.
        self._clients: dict[tuple[str, str, str | None], Any] = {}

    def client(self, service: str, region: str = "us-east-1", *, account: str | None = None) -> Any:
        key = (service, region, account)
        if key not in self._clients:
            self._clients[key] = self._new_client(service, region, account)
        return self._clients[key]

    def _new_client(self, service: str, region: str, account: str | None) -> Any:
        client = boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name=region,
            aws_access_key_id=BUILTIN_KEYS[0],
            aws_secret_access_key=BUILTIN_KEYS[1],
        )
        if account is not None:
            # moto's header for a call in another account.
            def in_account(request: Any, **_: Any) -> None:
                request.headers["x-moto-account-id"] = account

            client.meta.events.register("before-sign.*.*", in_account)
        return client

    def image(self, region: str, source: str, name: str, tags: Mapping[str, str]) -> str:
        """An AMI made as a build makes one (an instance, then CreateImage), tagged, snapshots too."""
        ec2 = self.client("ec2", region)
        instance = ec2.run_instances(ImageId=source, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0]
        ami = str(ec2.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"])
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
        self.tag(region, ami, tags)
        return ami

    def tag(self, region: str, ami: str, tags: Mapping[str, str]) -> None:
        ec2 = self.client("ec2", region)
        image = ec2.describe_images(ImageIds=[ami])["Images"][0]
        snapshots = [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if "Ebs" in m]
        ec2.create_tags(Resources=[ami, *snapshots], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def auto_scaling(self, source: str, *, account: str | None) -> None:
        """What launches images in an account besides instances: a launch template, a launch configuration and an
        Auto Scaling group of each (from `source`, no stamp image: they use nothing prune retires)."""
        ec2 = self.client("ec2", account=account)
        scaling = self.client("autoscaling", account=account)
        ec2.create_launch_template(LaunchTemplateName="team", LaunchTemplateData={"ImageId": source})
        scaling.create_launch_configuration(LaunchConfigurationName="team", ImageId=source, InstanceType="t3.micro")
        for name, how in (
            ("by-template", {"LaunchTemplate": {"LaunchTemplateName": "team", "Version": "$Latest"}}),
            ("by-configuration", {"LaunchConfigurationName": "team"}),
        ):
            scaling.create_auto_scaling_group(
                AutoScalingGroupName=name, MinSize=0, MaxSize=0, AvailabilityZones=["us-east-1a"], **how
            )

    def leftovers(self, source: str) -> None:
        """What a killed build leaves, all tagged with its build ID, for the janitor."""
        tags = {BUILD_ID_TAG: LEFTOVER_BUILD, IMAGE_TAG: "web"}
        spec = [{"Key": k, "Value": v} for k, v in tags.items()]
        ec2 = self.client("ec2", REGIONS[0])
        name = f"stamp-build-{LEFTOVER_BUILD}-{secrets.token_hex(3)}"
        ec2.run_instances(
            ImageId=source,
            InstanceType="t3.micro",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": spec}],
        )
        ec2.import_key_pair(
            KeyName=name, PublicKeyMaterial=LEFTOVER_KEY, TagSpecifications=[{"ResourceType": "key-pair", "Tags": spec}]
        )
        ec2.create_security_group(
            GroupName=name, Description="left", TagSpecifications=[{"ResourceType": "security-group", "Tags": spec}]
        )
        self.image(REGIONS[0], source, name, tags)


@dataclass
class World:
    """A workspace with its local cloud (IAM enforced), one IAM user per role and the consumer account's role."""

    workspace: Path
    endpoint: str
    seed: str
    keys: dict[str, tuple[str, str]]
    # base's release before the pipeline, per region.
    old_amis: dict[str, str]
    ran: list[Ran] = field(default_factory=list)

    @property
    def catalog(self) -> Path:
        return self.workspace / "catalog.yaml"

    @property
    def build(self) -> Path:
        return self.workspace / "build"

    @functools.cached_property
    def admin(self) -> Admin:
        return Admin(self.endpoint)

    def run(self, step: Step) -> Ran:
        """`step` in this process, signed with its role's keys; `--out` is the workspace's build folder."""
        argv = [*step.argv, "--catalog", str(self.catalog), "--cloud", "local"]
        if step.argv[0] in ("build", "verify", "record"):
            argv += ["--out", str(self.build)]
        elif step.argv[0] == "plan":
            # A folder without inventories each time: the plan reads them from S3 and keeps them there.
            argv += ["--out", str(self.workspace.with_name(f"{self.workspace.name}-plan-{secrets.token_hex(4)}"))]
        key, secret = self.keys[step.role]
        out = io.StringIO()
        started = time.monotonic()
        with (
            environment(**{CREDENTIALS_ENV: "env", "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(out),
        ):
            code = main(argv)
        logs = [self.workspace / log for log in step.logs]
        text = out.getvalue() + "".join(log.read_text(errors="replace") for log in logs if log.is_file())
        ran = Ran(step, code, text, round(time.monotonic() - started, 1))
        self.ran.append(ran)
        return ran

    def set_policy(self, role: str, document: Mapping[str, Any]) -> None:
        set_policy(self.admin, role, document)

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.workspace), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()


def make_workspace(root: Path) -> str:
    """The test repository, without its catalog's releases filled in yet; returns the vendor filter's pattern."""
    pattern = f"stamp-iam-test-{secrets.token_hex(4)}-*"
    for path, text in {
        "images/base/no-apt-sources.sh": NO_APT_SOURCES,
        "images/base/tests/test_base.py": IMAGE_TEST,
        "images/web/tests/test_web.py": IMAGE_TEST,
        "images/broken/fail.sh": "#!/usr/bin/env bash\necho this build fails >&2\nexit 1\n",
        ".gitignore": ".stamp/\nbuild/\n",
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / WORKSPACE_MARKER).parent.mkdir(parents=True, exist_ok=True)
    (root / WORKSPACE_MARKER).touch()
    return pattern


def catalog_text(pattern: str, east: str, west: str) -> str:
    return CATALOG.format(
        bucket=BUCKET,
        topic=TOPIC,
        pattern=pattern,
        vendor=VENDOR,
        consumer=CONSUMER,
        east=east,
        west=west,
        old_build=OLD_BASE_BUILD,
    )


# Packer 1.6.6's waiters poll on through a refusal: without ec2:DescribeInstances a build waits its 120 attempts
# twice (~4 minutes) before it fails. moto's instances run and its AMIs are available at the first poll, so
# builds here get 2 (a second of polling for each waiter a refusal stalls; the pipeline's builds show 2 suffice).
POLL_ATTEMPTS = "2"


def fewer_polls(start_build: Any) -> Any:
    def started(self: LocalTarget, *args: Any, **kwargs: Any) -> BuildMachine:
        machine: BuildMachine = start_build(self, *args, **kwargs)
        return dataclasses.replace(machine, variables={**machine.variables, "poll_max_attempts": POLL_ATTEMPTS})

    return started


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalTarget, "start_build", fewer_polls(LocalTarget.start_build))
        yield from _world(tmp_path_factory)


def _world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workspace = tmp_path_factory.mktemp("iam-workspace")
    pattern = make_workspace(workspace)
    # The first draft names placeholder AMIs; the seed's ID follows from the vendor filter alone.
    (workspace / "catalog.yaml").write_text(catalog_text(pattern, "ami-0aaaaaaaaaaaaaaaa", "ami-0aaaaaaaaaaaaaaaa"))
    catalog = load_catalog(workspace / "catalog.yaml", check_files=False)
    with environment(**{IAM_ENV: "enforce", CREDENTIALS_ENV: None}):
        cloud = local.up(workspace, seeds_for(catalog))
    try:
        admin = Admin(cloud.endpoint_url)
        seed = seeds_for(catalog)[0].resolved_ami_id
        old = {BUILD_ID_TAG: OLD_BASE_BUILD, IMAGE_TAG: "base", VERIFIED_TAG: "passed"}
        east, west = (admin.image(region, seed, OLD_BASE_BUILD, old) for region in REGIONS)
        (workspace / "catalog.yaml").write_text(catalog_text(pattern, east, west))
        keys = setup_iam(admin, workspace / "catalog.yaml")
        admin.client("sns").create_topic(Name=TOPIC.rpartition(":")[2])
        for account in (None, CONSUMER):
            admin.auto_scaling(seed, account=account)
        found = World(workspace, cloud.endpoint_url, seed, keys, {"us-east-1": east, "eu-west-1": west})
        found.git("init", "-q", "-b", "main")
        found.git("add", "-A")
        found.git("commit", "-qm", "the test catalog")
        yield found
    finally:
        local.down(workspace)


def setup_iam(admin: Admin, catalog_path: Path) -> dict[str, tuple[str, str]]:
    """One user per pipeline role with its policy, and the consumer role in the consumer account; their keys."""
    found = policies(catalog_path)
    client = admin.client("iam")
    keys: dict[str, tuple[str, str]] = {}
    for role in iam.PIPELINE_ROLES:
        name = iam.ROLE_NAMES[role]
        client.create_user(UserName=name)
        made = client.create_access_key(UserName=name)["AccessKey"]
        keys[role] = (made["AccessKeyId"], made["SecretAccessKey"])
    values = iam.values_for(load_catalog(catalog_path), account=ACCOUNT, repository="example-org/images")
    trust = iam.policy(REPO, "consumer", values, trust=True)
    admin.client("iam", account=CONSUMER).create_role(
        RoleName="stamp-consumer", AssumeRolePolicyDocument=json.dumps(trust)
    )
    for role in iam.ROLES:
        set_policy(admin, role, found[role])
    return keys


def set_policy(admin: Admin, role: str, document: Mapping[str, Any]) -> None:
    """The user of `role` (for the consumer: the role in the consumer account) allowed exactly `document`."""
    if role == "consumer":
        admin.client("iam", account=CONSUMER).put_role_policy(
            RoleName="stamp-consumer", PolicyName="stamp-consumer", PolicyDocument=json.dumps(document)
        )
    else:
        name = iam.ROLE_NAMES[role]
        admin.client("iam").put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(document))


# What the workflows run, each as its role: merge.yml's plan, build-layer.yml's two layers (a child's layer first
# records the layers before it, in its own checkout), merge.yml's record job; schedule.yml's drift plan and
# janitor; and the release lifecycle the publish role runs (docs/lifecycle.md).
PLAN = Step("plan", ("plan", "--base", "HEAD", "--head", "HEAD", "--format", "json"))
LAYER_0 = (
    Step("build", ("build", "base"), logs=("build/base/logs/packer.log",)),
    Step("build", ("verify", "base")),
)
LAYER_1 = (
    Step("build", ("record", "--catalog-only", "base")),
    Step("build", ("build", "web"), logs=("build/web/logs/packer.log",)),
    # A sibling that fails: its error lists what the build left, in every region. Before web's verification, which
    # needs no permission the builds have not needed: a rerun without one only the failure needs stops sooner.
    Step("build", ("build", "broken"), logs=("build/broken/logs/packer.log",), exit=3),
    Step("build", ("verify", "web")),
)
PUBLISH = (
    Step("publish", ("record", "base", "web")),
    Step("publish", ("publish",)),
    Step("publish", ("prune",)),
    Step("publish", ("revoke", "web", "1", "--reason", "a test revocation", "--yes")),
    # The merge of the revocation: publish reaches the consumer accounts too (revoke's own republish does not).
    Step("publish", ("publish",)),
    Step("publish", ("restore", "web", "1", "--reason", "a test restore")),
    Step("publish", ("prune",)),
    Step("publish", ("gc", "--older-than", "1s")),
)


@dataclass(frozen=True)
class Prepared:
    """What the pipeline leaves for the necessity check: the catalog before any record, and the verified builds."""

    catalog: str
    builds: Path


@pytest.fixture(scope="module")
def pipeline(world: World) -> Prepared:
    """The whole pipeline, each step as its role, stopping at the first that does not pass."""
    initial = world.catalog.read_text()
    saved = world.workspace.with_name(world.workspace.name + "-builds")

    def run(steps: Sequence[Step]) -> None:
        for step in steps:
            ran = world.run(step)
            assert ran.passed, ran.why()

    run([PLAN, *LAYER_0, *LAYER_1])
    shutil.copytree(world.build, saved, ignore=shutil.ignore_patterns("logs"))
    # The build job's checkout goes: only the record job's edit reaches main.
    world.catalog.write_text(initial)
    world.admin.leftovers(world.seed)
    run(PUBLISH[:2])
    world.git("commit", "-qam", "stamp record: base web")
    run([PLAN, *PUBLISH[2:]])
    return Prepared(initial, saved)


def test_the_pipeline_runs_under_the_documented_roles(world: World, pipeline: Prepared) -> None:
    """Every step passed as its role (the fixture asserts it as it goes); here, that they did what they are for."""
    print("\n".join(f"{r.step.role:<8} {r.step.name:<36} {r.seconds:>5} s" for r in world.ran))
    assert [r.step.role for r in world.ran] == ["plan"] + ["build"] * 6 + ["publish"] * 2 + ["plan"] + ["publish"] * 6
    catalog = load_catalog(world.catalog)
    # base 1 was deprecated by the first prune and retired by the second; web 1 was revoked, then restored.
    assert [r.version for r in catalog.releases["base"]] == [2]
    web = catalog.current_release("web")
    assert web is not None and web.version == 1 and web.sbom is not None
    assert "new_source_image" in world.ran[0].output  # the vendor-image check of base 1's source
    drift = world.ran[9].output
    assert '"sources_checked": true' in drift and '"updates_checked": true' in drift
    assert "cannot be read" not in drift
    gc = world.ran[-1].output
    assert LEFTOVER_BUILD in gc and "removed" in gc


# -- each permission is needed ----------------------------------------------------------------------------------------

# The tags a build's AMIs carry from the build itself; what later commands add (the events ledger, deprecation,
# revocation) is not copied, so that the copies are new to every command.
BUILD_TAGS = (BUILD_ID_TAG, IMAGE_TAG, SOURCE_AMI_TAG, VERIFIED_TAG, DESCRIPTION_TAG)
# Whose steps a run without one of the role's actions reruns: the consumer role is used by the publish role's.
RERUN_AS = {"plan": "plan", "build": "build", "publish": "publish", "consumer": "publish"}


def rerun(world: World, prepared: Prepared, role: str) -> Ran | None:
    """The steps of `role` from the prepared state; the first one that does not pass, or None."""
    if role == "plan":
        steps: Sequence[Step] = [PLAN]
    elif role == "build":
        world.catalog.write_text(prepared.catalog)
        shutil.rmtree(world.build, ignore_errors=True)
        shutil.copytree(prepared.builds / "base", world.build / "base")
        steps = LAYER_1
    else:
        mint(world, prepared)
        steps = PUBLISH
    for step in steps:
        ran = world.run(step)
        if not ran.passed:
            return ran
    return None


def mint(world: World, prepared: Prepared) -> None:
    """The publish role's starting point again, on AMIs it has never seen: copies of the verified builds and a new
    old release of base, under new build IDs; the catalog and build results saying so; leftovers for the janitor."""
    admin = world.admin
    builds = {name: json.loads((prepared.builds / name / "result.json").read_text()) for name in ("base", "web")}
    renamed = {OLD_BASE_BUILD: fresh(OLD_BASE_BUILD)} | {b["build_id"]: fresh(b["build_id"]) for b in builds.values()}
    tags = {BUILD_ID_TAG: renamed[OLD_BASE_BUILD], IMAGE_TAG: "base", VERIFIED_TAG: "passed"}
    new = {
        ami: admin.image(region, world.seed, renamed[OLD_BASE_BUILD], tags) for region, ami in world.old_amis.items()
    }
    for build in builds.values():
        for region, ami in sorted(build["amis"].items()):
            ec2 = admin.client("ec2", region)
            image = ec2.describe_images(ImageIds=[ami])["Images"][0]
            copy = ec2.copy_image(
                SourceImageId=ami, SourceRegion=region, Name=f"{image['Name']}-{secrets.token_hex(3)}"
            )
            kept = {t["Key"]: t["Value"] for t in image.get("Tags", []) if t["Key"] in BUILD_TAGS}
            new[ami] = str(copy["ImageId"])
            admin.tag(region, new[ami], {k: replaced(v, renamed | new) for k, v in kept.items()})
    mapping = renamed | new
    world.catalog.write_text(replaced(prepared.catalog, mapping))
    for name in ("base", "web"):
        shutil.rmtree(world.build / name, ignore_errors=True)
        shutil.copytree(prepared.builds / name, world.build / name)
        for path in sorted((world.build / name).rglob("*"), reverse=True):
            if path.is_file():
                path.write_text(replaced(path.read_text(), mapping))
            if replaced(path.name, mapping) != path.name:
                path.rename(path.with_name(replaced(path.name, mapping)))
    admin.leftovers(world.seed)


def fresh(build_id: str) -> str:
    """The same build's ID with a new random part: the time in it stays (gc reads it)."""
    return build_id.rpartition("-")[0] + "-" + secrets.token_hex(3)


def replaced(text: str, mapping: Mapping[str, str]) -> str:
    for old, new in mapping.items():
        text = text.replace(old, new)
    return text


@pytest.mark.iam_necessity
def test_every_allowed_action_is_needed(world: World, pipeline: Prepared) -> None:
    """For each action a policy allows, the role's steps rerun without it: one must be refused that action, unless
    iam/needs.json says when the action is needed and why no local run reaches it (then none may be)."""
    needs: dict[str, dict[str, dict[str, str]]] = json.loads((REPO / "iam" / "needs.json").read_text())
    full = policies(world.catalog)
    rows: list[tuple[str, str, str, float]] = []
    problems: list[str] = []
    seconds: dict[str, float] = {}
    for role in iam.ROLES:
        started = time.monotonic()
        for action in allowed(full[role]):
            world.set_policy(role, without(full[role], action))
            tick = time.monotonic()
            try:
                failed = rerun(world, pipeline, RERUN_AS[role])
            finally:
                world.set_policy(role, full[role])
            took = round(time.monotonic() - tick, 1)
            noted = needs.get(role, {}).get(action)
            if failed is None:
                rows.append(
                    (role, action, f"not reached locally: {noted['needed when']}" if noted else "NOTHING", took)
                )
                if not noted:
                    problems.append(
                        f"iam/{role}.json allows {action}, but no step needs it: leave it out, or say in"
                        " iam/needs.json when it is needed and why no local run reaches it"
                    )
            elif not failed.refusals or (failed.refused_actions and action not in failed.refused_actions):
                # A run that fails otherwise, or is refused only other actions (which the policy allows), proves
                # nothing about this one: the prepared state or the policy is wrong. (A refusal may follow the one
                # that failed the step: a build refused ec2:CopyImage cannot deregister the AMI it made either.)
                problems.append(f"without {action}: " + failed.why())
            else:
                rows.append((role, action, failed.step.name, took))
                if noted:
                    problems.append(f"iam/needs.json: no local run is to reach {role} {action}, {failed.step.name} did")
        seconds[role] = round(time.monotonic() - started, 1)
    done = {f"{role} {action}" for role, action, _, _ in rows}
    stale = {f"{role} {action}" for role, marked in needs.items() for action in marked} - done
    if stale:
        problems.append(f"iam/needs.json names actions no policy allows: {sorted(stale)}")
    width = max(len(action) for _, action, _, _ in rows)
    print("\nrole      " + "action".ljust(width) + "  seconds  the step that needs it")
    print("\n".join(f"{role:<9} {action:<{width}}  {took:>7}  {step}" for role, action, step, took in rows))
    print("seconds per role: " + ", ".join(f"{role} {s}" for role, s in seconds.items()))
    assert not problems, "\n".join(problems)
