"""`stamp iam policy|cloudformation`: the IAM roles of docs/adopting.md, from the policy files in iam/.

iam/<role>.json is each role's permission policy and iam/trust/<role>.json its trust policy: the one source of the
guide, of this command and of the test that runs the pipeline under them (tests/e2e/test_iam_roles.py). Their
`${Name}` placeholders are filled here (PLACEHOLDERS): the account and repository from the options, the rest
from the catalog. A statement naming something the catalog does not use (no `defaults.artifacts`, no SNS topic,
no event bus, no consumer accounts) is left out.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stamp.catalog.load import Catalog
from stamp.commands.common import catalog_of
from stamp.errors import CatalogError, UsageError

ROLES = ("plan", "build", "publish", "consumer")
# The roles of the workflows, in the account that builds; `consumer` lives in each consumer account.
PIPELINE_ROLES = ("plan", "build", "publish")
ROLE_NAMES = {"plan": "stamp-plan", "build": "stamp-build", "publish": "stamp-publish", "consumer": "stamp-consumer"}
# build-layer.yml asks for 7,200 s: Packer plus verification can outlast the default hour.
MAX_SESSION_SECONDS = {"build": 7200}
POLICY_DIR = Path("iam")
# Where each placeholder's value comes from; the account and the repository must be given when a file names them.
PLACEHOLDERS = {
    "Account": "--account: the AWS account the roles are made in (the publishing account)",
    "Repository": "--repository: the GitHub repository OWNER/NAME whose workflows assume the roles",
    "Artifacts": "defaults.artifacts: BUCKET/PREFIX",
    "Topics": "defaults.notify.sns: the topic ARNs (a list)",
    "EventBus": "defaults.notify.eventbridge.bus: its ARN",
    "ConsumerRole": "defaults.consumers.role: its ARN, any account",
}
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_REQUIRED = ("Account", "Repository")

Value = str | list[str] | None


def policy_path(root: Path, role: str, *, trust: bool = False) -> Path:
    """iam/<role>.json, or iam/trust/<role>.json for the trust policy, under the repository `root`."""
    return root / POLICY_DIR / ("trust" if trust else "") / f"{role}.json"


def read_policy(root: Path, role: str, *, trust: bool = False) -> dict[str, Any]:
    """A policy file as it is, placeholders and all."""
    path = policy_path(root, role, trust=trust)
    try:
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path} does not exist", hint="copy iam/ from stamp's repository") from None
    except ValueError as exc:
        raise CatalogError(f"{path} is not JSON: {exc}") from None
    return document


def consumer_role_name(catalog: Catalog) -> str:
    """The consumer role's name: the last part of defaults.consumers.role, or stamp-consumer."""
    consumers = catalog.defaults.consumers
    return consumers.role.rpartition("/")[2] if consumers is not None else ROLE_NAMES["consumer"]


def values_for(catalog: Catalog, *, account: str | None, repository: str | None) -> dict[str, Value]:
    """Every placeholder's value for `catalog`; None where it has none."""
    if account is not None and not _ACCOUNT.match(account):
        raise UsageError(f"--account {account}: an AWS account ID is 12 digits")
    if repository is not None and not _REPOSITORY.match(repository):
        raise UsageError(f"--repository {repository}: expected OWNER/NAME, e.g. example-org/images")
    defaults = catalog.defaults
    artifacts = defaults.artifacts
    notify = defaults.notify
    bus = notify.eventbridge.bus if notify is not None and notify.eventbridge is not None else None
    if bus is not None and not bus.startswith("arn:"):
        # A bus name is in the first of defaults.regions (docs/events.md), in this account.
        bus = f"arn:aws:events:{defaults.regions[0]}:${{Account}}:event-bus/{bus}"
    consumers = defaults.consumers
    return {
        "Account": account,
        "Repository": repository,
        "Artifacts": "/".join(p for p in (artifacts.bucket, artifacts.prefix) if p) if artifacts else None,
        "Topics": list(notify.sns) if notify is not None and notify.sns else None,
        "EventBus": bus,
        "ConsumerRole": consumers.role.replace("{account}", "*") if consumers is not None else None,
    }


def fill(document: Mapping[str, Any], values: Mapping[str, Value], *, source: str) -> dict[str, Any]:
    """`document` with its placeholders filled; statements naming a catalog placeholder without a value are left out.

    A string that is a list placeholder alone (`"${Topics}"`) becomes the list's items. The catalog's values are
    filled first, as they may name the account themselves (an event bus given by name). `source` names the file
    in errors.
    """
    optional = {name: value for name, value in values.items() if name not in _REQUIRED}
    statements = []
    for statement in document["Statement"]:
        names = set(_PLACEHOLDER.findall(json.dumps(statement)))
        unknown = sorted(names - set(PLACEHOLDERS))
        if unknown:
            raise CatalogError(
                f"{source}: unknown placeholder ${{{unknown[0]}}}", hint=f"known: {', '.join(PLACEHOLDERS)}"
            )
        if any(optional.get(name, "") is None for name in names):
            continue
        statement = _filled(statement, optional)
        names = set(_PLACEHOLDER.findall(json.dumps(statement)))
        for name in _REQUIRED:
            if name in names and values.get(name) is None:
                raise UsageError(f"{source} names ${{{name}}}: give {PLACEHOLDERS[name].split(':')[0]}")
        statements.append(_filled(statement, {name: values.get(name) for name in _REQUIRED}))
    return {**document, "Statement": statements}


def _filled(value: Any, values: Mapping[str, Value]) -> Any:
    """`value` with the placeholders named in `values` replaced (others stay as they are)."""
    if isinstance(value, dict):
        return {key: _filled(item, values) for key, item in value.items()}
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            done = _filled(item, values)
            out.extend(done if isinstance(done, list) and isinstance(item, str) else [done])
        return out
    if not isinstance(value, str):
        return value
    whole = _PLACEHOLDER.fullmatch(value)
    if whole and isinstance(values.get(whole[1]), list):
        return list(values[whole[1]] or [])
    return _PLACEHOLDER.sub(lambda m: _text(values[m[1]], m[1]) if m[1] in values else m[0], value)


def _text(value: Value, name: str) -> str:
    if not isinstance(value, str):
        raise CatalogError(f"${{{name}}} is a list: it can only stand alone, as a whole string")
    return value


def policy(root: Path, role: str, values: Mapping[str, Value], *, trust: bool = False) -> dict[str, Any]:
    """The role's permission (or trust) policy, filled."""
    path = policy_path(root, role, trust=trust)
    return fill(read_policy(root, role, trust=trust), values, source=str(path))


@dataclass(frozen=True)
class RoleSpec:
    """One role of the template: its name and its two filled policies."""

    role: str
    name: str
    trust: dict[str, Any]
    permissions: dict[str, Any]


def role_specs(root: Path, catalog: Catalog, roles: Sequence[str], values: Mapping[str, Value]) -> list[RoleSpec]:
    """The roles' names and filled policies; the consumer role is named as defaults.consumers.role names it."""
    names = {**ROLE_NAMES, "consumer": consumer_role_name(catalog)}
    return [
        RoleSpec(role, names[role], policy(root, role, values, trust=True), policy(root, role, values))
        for role in roles
    ]


def cloudformation(specs: Sequence[RoleSpec]) -> dict[str, Any]:
    """A CloudFormation template making each role with its trust policy and its permissions as an inline policy."""
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for spec in specs:
        logical = f"{spec.role.capitalize()}Role"
        properties: dict[str, Any] = {
            "RoleName": spec.name,
            "Description": f"stamp's {spec.role} role (docs/adopting.md, section 2), from iam/{spec.role}.json",
            "AssumeRolePolicyDocument": spec.trust,
            "Policies": [{"PolicyName": spec.name, "PolicyDocument": spec.permissions}],
        }
        if spec.role in MAX_SESSION_SECONDS:
            properties["MaxSessionDuration"] = MAX_SESSION_SECONDS[spec.role]
        resources[logical] = {"Type": "AWS::IAM::Role", "Properties": properties}
        outputs[f"{logical}Arn"] = {"Value": {"Fn::GetAtt": [logical, "Arn"]}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "stamp's IAM roles, from iam/*.json (`stamp iam cloudformation`)",
        "Resources": resources,
        "Outputs": outputs,
    }


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    root = catalog.root
    values = values_for(catalog, account=args.account, repository=args.repository)
    roles = args.role or []
    if args.action == "policy":
        if len(roles) != 1:
            raise UsageError("stamp iam policy takes one --role", hint=f"one of {', '.join(ROLES)}")
        print(json.dumps(policy(root, roles[0], values, trust=args.trust), indent=2))
        return 0
    if args.trust:
        raise UsageError("--trust is for `stamp iam policy`: the template has both policies of every role")
    specs = role_specs(root, catalog, roles or PIPELINE_ROLES, values)
    print(json.dumps(cloudformation(specs), indent=2))
    return 0
