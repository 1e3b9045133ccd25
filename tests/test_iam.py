"""`stamp iam`: the policy files in iam/ filled for a catalog, one at a time or as a CloudFormation template that holds
every one verbatim; iam/needs.json names only what the policies allow; the local cloud's IAM enforcement answers
as each service does. Running the pipeline under the roles is tests/e2e/test_iam_roles.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

from conftest import stamp_moto
from stamp.cli import main
from stamp.cloud.aws import AwsCloud
from stamp.commands import iam
from stamp.errors import CloudError
from stamp.local.credentials import BUILTIN_KEYS, credentials, wants_iam
from stamp.local.motoserver import signing_key

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "111122223333"
REPOSITORY = "example-org/images"

# Every catalog value a placeholder stands for.
FULL_DEFAULTS = """\
  artifacts: {bucket: example-stamp-artifacts, prefix: golden-images}
  consumers: {role: "arn:aws:iam::{account}:role/team-images"}
  notify:
    sns: ["arn:aws:sns:us-east-1:111122223333:stamp-releases", "arn:aws:sns:eu-west-1:111122223333:stamp-eu"]
    eventbridge: {bus: default}
"""


@pytest.fixture
def full_catalog(tmp_path: Path) -> Path:
    """This repository's catalog with artifacts, consumers and notifications, in a copy with the policy files."""
    text = (REPO / "catalog.yaml").read_text()
    text = re.sub(r"^defaults:.*$", "defaults:\n" + FULL_DEFAULTS.rstrip(), text, count=1, flags=re.M)
    assert FULL_DEFAULTS in text
    (tmp_path / "catalog.yaml").write_text(text)
    for name in ("iam", "images"):
        _copy_tree(REPO / name, tmp_path / name)
    return tmp_path / "catalog.yaml"


def _copy_tree(source: Path, target: Path) -> None:
    for path in source.rglob("*"):
        if path.is_file():
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            (target / path.relative_to(source)).write_bytes(path.read_bytes())


def stamp_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(list(argv)) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_every_role_has_a_permission_and_a_trust_policy_with_known_placeholders() -> None:
    for role in iam.ROLES:
        for trust in (False, True):
            document = iam.read_policy(REPO, role, trust=trust)
            assert document["Version"] == "2012-10-17"
            names = set(iam._PLACEHOLDER.findall(json.dumps(document)))
            assert names <= set(iam.PLACEHOLDERS), (role, trust, names)


def test_the_policy_is_filled_for_this_repositorys_catalog_which_uses_no_artifacts_events_or_consumers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalog = str(REPO / "catalog.yaml")
    plan = stamp_json(capsys, "iam", "policy", "--role", "plan", "--catalog", catalog)
    assert [s["Sid"] for s in plan["Statement"]] == ["FindVendorImages"]
    publish = stamp_json(capsys, "iam", "policy", "--role", "publish", "--account", ACCOUNT, "--catalog", catalog)
    sids = [s["Sid"] for s in publish["Statement"]]
    for left_out in (
        "StoreArtifacts",
        "AnnounceReleasesToTheTopics",
        "AnnounceReleasesOnTheBus",
        "ReachTheConsumerAccounts",
    ):
        assert left_out not in sids
    assert "${" not in json.dumps(publish)
    assert f"arn:aws:ssm:*:{ACCOUNT}:parameter/stamp/*" in json.dumps(publish)


def test_the_catalogs_values_fill_the_rest(full_catalog: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = str(full_catalog)
    plan = stamp_json(capsys, "iam", "policy", "--role", "plan", "--catalog", catalog)
    (inventories,) = [s for s in plan["Statement"] if s["Sid"] == "ReadInventories"]
    assert inventories["Resource"] == "arn:aws:s3:::example-stamp-artifacts/golden-images/*/packages.json"
    publish = stamp_json(capsys, "iam", "policy", "--role", "publish", "--account", ACCOUNT, "--catalog", catalog)
    by_sid = {s["Sid"]: s for s in publish["Statement"]}
    assert by_sid["AnnounceReleasesToTheTopics"]["Resource"] == [
        "arn:aws:sns:us-east-1:111122223333:stamp-releases",
        "arn:aws:sns:eu-west-1:111122223333:stamp-eu",
    ]
    # A bus named, not given as an ARN: the catalog's first region, this account.
    assert by_sid["AnnounceReleasesOnTheBus"]["Resource"] == f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default"
    assert by_sid["ReachTheConsumerAccounts"]["Resource"] == "arn:aws:iam::*:role/team-images"
    trust = stamp_json(
        capsys, "iam", "policy", "--role", "consumer", "--trust", "--account", ACCOUNT, "--catalog", catalog
    )
    assert trust["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:role/stamp-publish"}


def test_what_the_files_need_must_be_given(capsys: pytest.CaptureFixture[str]) -> None:
    catalog = str(REPO / "catalog.yaml")
    assert main(["iam", "policy", "--role", "build", "--catalog", catalog]) == 2
    assert "names ${Account}: give --account" in capsys.readouterr().err
    assert main(["iam", "policy", "--role", "build", "--trust", "--account", ACCOUNT, "--catalog", catalog]) == 2
    assert "give --repository" in capsys.readouterr().err
    assert main(["iam", "policy", "--role", "build", "--account", "1234", "--catalog", catalog]) == 2
    assert "12 digits" in capsys.readouterr().err
    assert main(["iam", "policy", "--catalog", catalog]) == 2
    assert "one --role" in capsys.readouterr().err


@pytest.mark.parametrize("roles", [(), ("consumer",)])
def test_the_template_holds_every_policy_verbatim(
    roles: tuple[str, ...], full_catalog: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `stamp iam policy` prints for a role is, as it is, that role's trust policy and inline policy in the
    template: the stack makes exactly the reviewed policies."""
    common = ["--account", ACCOUNT, "--repository", REPOSITORY, "--catalog", str(full_catalog)]
    chosen = [arg for role in roles for arg in ("--role", role)]
    template = stamp_json(capsys, "iam", "cloudformation", *chosen, *common)
    resources = template["Resources"]
    wanted = roles or iam.PIPELINE_ROLES
    assert set(resources) == {f"{role.capitalize()}Role" for role in wanted}
    for role in wanted:
        properties = resources[f"{role.capitalize()}Role"]["Properties"]
        trust = stamp_json(capsys, "iam", "policy", "--role", role, "--trust", *common)
        permissions = stamp_json(capsys, "iam", "policy", "--role", role, *common)
        assert properties["AssumeRolePolicyDocument"] == trust
        assert properties["Policies"] == [{"PolicyName": properties["RoleName"], "PolicyDocument": permissions}]
        assert "${" not in json.dumps(properties)
    if not roles:
        assert resources["BuildRole"]["Properties"]["MaxSessionDuration"] == 7200
        assert [r["Properties"]["RoleName"] for r in resources.values()] == [
            "stamp-plan",
            "stamp-build",
            "stamp-publish",
        ]
    else:
        assert resources["ConsumerRole"]["Properties"]["RoleName"] == "team-images"


def test_needs_names_only_actions_the_policies_allow_and_says_when_and_why() -> None:
    needs = json.loads((REPO / "iam" / "needs.json").read_text())
    for role, marked in needs.items():
        document = iam.read_policy(REPO, role)
        allowed = {a for s in document["Statement"] if s["Effect"] == "Allow" for a in _list(s["Action"])}
        for action, why in marked.items():
            assert action in allowed, (role, action)
            assert set(why) == {"needed when", "not reached locally"} and all(why.values()), (role, action)


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


# -- the local cloud's keys and its IAM enforcement -----------------------------------------------------------------


def test_the_local_cloud_signs_with_its_own_keys_unless_told_to_take_the_environments() -> None:
    keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
    assert credentials({**keys}) == BUILTIN_KEYS
    assert credentials({**keys, "STAMP_LOCAL_CREDENTIALS": "builtin"}) == BUILTIN_KEYS
    assert credentials({**keys, "STAMP_LOCAL_CREDENTIALS": "env"}) == ("AKIAEXAMPLE", "secret")
    with pytest.raises(Exception, match="needs AWS_ACCESS_KEY_ID"):
        credentials({"STAMP_LOCAL_CREDENTIALS": "env"})
    with pytest.raises(Exception, match="expected env or builtin"):
        credentials({"STAMP_LOCAL_CREDENTIALS": "yes"})
    assert [wants_iam({}), wants_iam({"STAMP_LOCAL_IAM": "off"}), wants_iam({"STAMP_LOCAL_IAM": "enforce"})] == [
        None,
        False,
        True,
    ]


def test_the_signing_key_is_read_from_the_authorization_header() -> None:
    header = "AWS4-HMAC-SHA256 Credential=testing/20261127/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x"
    assert signing_key({"Authorization": header}) == "testing"
    assert signing_key({}) == ""


@pytest.fixture(scope="module")
def enforcing_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """stamp's moto server with IAM enforced, as `STAMP_LOCAL_IAM=enforce stamp local up` starts it."""
    with stamp_moto(tmp_path_factory.mktemp("amis"), enforce_iam=True) as url:
        yield url


def _client(url: str, service: str, keys: tuple[str, str]) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=keys[0], aws_secret_access_key=keys[1]
    )


def test_enforced_iam_allows_the_clouds_own_keys_and_refuses_as_each_service_does(enforcing_moto: str) -> None:
    admin = _client(enforcing_moto, "iam", BUILTIN_KEYS)
    admin.create_user(UserName="reader")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeImages", "Resource": "*"}],
    }
    admin.put_user_policy(UserName="reader", PolicyName="reader", PolicyDocument=json.dumps(policy))
    made = admin.create_access_key(UserName="reader")["AccessKey"]
    reader = (made["AccessKeyId"], made["SecretAccessKey"])
    _client(enforcing_moto, "ec2", reader).describe_images(Owners=["self"])
    refusals: dict[str, tuple[str, Callable[[Any], object]]] = {
        "ec2": ("UnauthorizedOperation", lambda c: c.describe_instances()),
        "ssm": ("AccessDeniedException", lambda c: c.put_parameter(Name="/stamp/x", Value="y", Type="String")),
        "sns": ("AccessDenied", lambda c: c.list_topics()),
    }
    for service, (code, call) in refusals.items():
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            call(_client(enforcing_moto, service, reader))
        assert caught.value.response["Error"]["Code"] == code, service
        assert "not authorized to perform" in str(caught.value)
    with pytest.raises(botocore.exceptions.ClientError, match="AuthFailure"):
        _client(enforcing_moto, "ec2", ("AKIAUNKNOWN", "x")).describe_images(Owners=["self"])
    # The cloud's own keys are its administrator's.
    _client(enforcing_moto, "ssm", BUILTIN_KEYS).put_parameter(Name="/stamp/x", Value="y", Type="String")
    # stamp names the permission to add, also where S3 says only 403 (HeadObject has no body).
    _client(enforcing_moto, "s3", BUILTIN_KEYS).create_bucket(Bucket="stamp-iam-unit")
    with pytest.raises(CloudError) as refused:
        AwsCloud(enforcing_moto, credentials=reader, max_attempts=1).head_object("us-east-1", "stamp-iam-unit", "k")
    assert "allow s3:GetObject in us-east-1" in refused.value.hint
