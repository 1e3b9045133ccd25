"""What `stamp record` confirms in the cloud before it trusts a build result (docs/custody.md)."""

from __future__ import annotations

from collections.abc import Sequence

from stamp.cloud import BUILD_ID_TAG, VERIFIED, VERIFIED_TAG, Cloud
from stamp.errors import PolicyError
from stamp.results import BuildResult


def custody_problems(cloud: Cloud, result: BuildResult, account_id: str) -> list[str]:
    """One line per AMI of `result` that is not what record may write: `<ami> in <region>: why`."""
    problems: list[str] = []
    for region, ami_id in sorted(result.amis.items()):
        details = cloud.describe_images(region, [ami_id]).get(ami_id)
        where = f"{ami_id} in {region}"
        if details is None:
            problems.append(f"{where}: does not exist (deregistered, or never registered by this build)")
            continue
        if details.state != "available":
            problems.append(f"{where}: is {details.state}, not available")
        if details.owner_id != account_id:
            problems.append(f"{where}: is owned by account {details.owner_id}, not by this account ({account_id})")
        build_id = details.tags.get(BUILD_ID_TAG)
        if build_id != result.build_id:
            problems.append(f"{where}: carries {BUILD_ID_TAG}={build_id or '(none)'}, not {result.build_id}")
        if details.tags.get(VERIFIED_TAG) != VERIFIED:
            problems.append(f"{where}: has no {VERIFIED_TAG}={VERIFIED} tag (stamp verify sets it when tests pass)")
    return problems


def confirm_custody(cloud: Cloud, results: Sequence[BuildResult], *, cloud_kind: str) -> None:
    """Refuses (exit 6) results whose AMIs are missing, foreign, unverified, or not this build's, in any region,
    and dirty results on AWS; nothing is written when any result is refused."""
    refusals: list[str] = []
    account_id = cloud.account_id()
    for result in results:
        if result.dirty and cloud_kind == "aws":
            refusals.append(
                f"{result.image} build {result.build_id}: built from uncommitted changes ("
                + "; ".join(result.dirty_inputs[:5] or ["inputs differ from the commit"])
                + ")"
            )
        problems = custody_problems(cloud, result, account_id)
        refusals += [f"{result.image} build {result.build_id}: {problem}" for problem in problems]
    if refusals:
        raise PolicyError(
            "refusing to record what stamp cannot vouch for; the catalog was not changed:\n  " + "\n  ".join(refusals),
            hint="build and verify again from a clean checkout (`stamp build IMAGE && stamp verify IMAGE`); record "
            "takes only AMIs this account owns, still available, tagged by the build and passed by stamp verify",
        )
