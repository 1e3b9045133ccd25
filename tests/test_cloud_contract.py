"""One contract, two clouds: the in-memory fake (tests/fakes.py) must behave as AwsCloud does on moto, or the
fast tests above the seam would test a cloud that does not exist."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from conftest import MakeAmi
from fakes import FakeCloud
from stamp.cloud.aws import AwsCloud
from stamp.cloud.protocol import Cloud, ShareDiff, ShareSet
from stamp.errors import CloudError, MissingResource
from stamp.tags import BUILD_ID_TAG, IMAGE_TAG

REGION = "eu-west-1"
ACCOUNTS = ShareSet(accounts=frozenset({"111122223333", "444455556666"}))


@dataclass(frozen=True)
class Subject:
    cloud: Cloud
    make_image: Callable[[], str]
    # An SNS topic of that name in REGION; returns its ARN.
    make_topic: Callable[[str], str]


@pytest.fixture(params=["fake", "moto"])
def subject(request: pytest.FixtureRequest) -> Subject:
    if request.param == "fake":
        fake = FakeCloud()
        return Subject(
            fake, lambda: fake.add_image(REGION, "contract").ami_id, lambda name: fake.add_topic(REGION, name)
        )
    aws: AwsCloud = request.getfixturevalue("aws")
    make_ami: MakeAmi = request.getfixturevalue("make_ami")

    def make_topic(name: str) -> str:
        return str(aws.sns(REGION).create_topic(Name=name)["TopicArn"])

    return Subject(aws, lambda: make_ami(REGION, "contract"), make_topic)


def test_describe_images_answers_only_for_amis_that_exist(subject: Subject) -> None:
    ami_id = subject.make_image()
    found = subject.cloud.describe_images(REGION, [ami_id, "ami-0000000000000dead"])
    assert set(found) == {ami_id}
    assert found[ami_id].state == "available"
    assert found[ami_id].owner_id == subject.cloud.account_id()
    assert len(found[ami_id].snapshot_ids) == 1
    assert subject.cloud.describe_image(REGION, "ami-0000000000000dead") is None


def test_tags_are_added_and_removed(subject: Subject) -> None:
    ami_id = subject.make_image()
    subject.cloud.create_tags(REGION, [ami_id], {BUILD_ID_TAG: "b-1", IMAGE_TAG: "web"})
    subject.cloud.delete_tags(REGION, [ami_id], [IMAGE_TAG])
    details = subject.cloud.describe_image(REGION, ami_id)
    assert details is not None
    assert {k: v for k, v in details.tags.items() if k.startswith("stamp:")} == {BUILD_ID_TAG: "b-1"}


def test_own_images_tagged_lists_only_the_tagged_ones(subject: Subject) -> None:
    tagged, plain = subject.make_image(), subject.make_image()
    subject.cloud.create_tags(REGION, [tagged], {IMAGE_TAG: "web"})
    found = subject.cloud.own_images_tagged(REGION, IMAGE_TAG)
    assert tagged in found and plain not in found
    assert found[tagged].tags[IMAGE_TAG] == "web"


def test_launch_and_snapshot_permissions_are_reconciled_both_ways(subject: Subject) -> None:
    ami_id = subject.make_image()
    cloud = subject.cloud
    cloud.modify_launch_permissions(REGION, ami_id, ShareDiff(add=ACCOUNTS))
    assert cloud.get_launch_permissions(REGION, ami_id) == ACCOUNTS
    cloud.modify_launch_permissions(REGION, ami_id, ShareDiff(remove=ACCOUNTS))
    assert cloud.get_launch_permissions(REGION, ami_id) == ShareSet()
    details = cloud.describe_image(REGION, ami_id)
    assert details is not None
    (snapshot_id,) = details.snapshot_ids
    everyone = ShareSet(accounts=frozenset({"111122223333"}), public=True)
    cloud.modify_snapshot_permissions(REGION, snapshot_id, ShareDiff(add=everyone))
    assert cloud.get_snapshot_permissions(REGION, snapshot_id) == everyone
    cloud.modify_snapshot_permissions(REGION, snapshot_id, ShareDiff(remove=everyone))
    assert cloud.get_snapshot_permissions(REGION, snapshot_id) == ShareSet()


def test_a_deregistered_ami_is_missing(subject: Subject) -> None:
    ami_id = subject.make_image()
    subject.cloud.deregister_image(REGION, ami_id)
    assert subject.cloud.describe_image(REGION, ami_id) is None
    # AWS says InvalidAMIID (MissingResource); moto 5.2 answers HTTP 500 for this call, so only the family is
    # common ground.
    with pytest.raises(CloudError):
        subject.cloud.get_launch_permissions(REGION, ami_id)


def test_parameters_change_only_when_their_value_does(subject: Subject) -> None:
    cloud = subject.cloud
    first, second = subject.make_image(), subject.make_image()
    assert cloud.put_image_parameter(REGION, "/stamp/web/current", first).version == 1
    same = cloud.put_image_parameter(REGION, "/stamp/web/current", first)
    assert (same.changed, same.version) == (False, 1)
    assert cloud.put_image_parameter(REGION, "/stamp/web/current", second).version == 2
    with pytest.raises(CloudError):
        cloud.write_image_parameter(REGION, "/stamp/web/current", first, overwrite=False)
    assert cloud.get_parameters(REGION, ["/stamp/web/current", "/stamp/nope/current"]).keys() == {"/stamp/web/current"}
    assert cloud.delete_parameter(REGION, "/stamp/web/current") is True
    assert cloud.delete_parameter(REGION, "/stamp/web/current") is False


def test_terminated_instances_leave_the_janitors_list(subject: Subject) -> None:
    ami_id = subject.make_image()
    cloud = subject.cloud
    (instance,) = cloud.run_instances(REGION, ami_id, count=1, instance_type="t3.micro", tags={BUILD_ID_TAG: "b-2"})
    assert instance.state in ("pending", "running")
    listed = [r for r in cloud.list_tagged(REGION, BUILD_ID_TAG, "b-2") if r.kind == "instance"]
    assert [r.resource_id for r in listed] == [instance.instance_id]
    cloud.terminate_instances(REGION, [instance.instance_id])
    (after,) = cloud.describe_instances(REGION, [instance.instance_id])
    assert after.state in ("shutting-down", "terminated")
    assert not [r for r in cloud.list_tagged(REGION, BUILD_ID_TAG, "b-2") if r.kind == "instance"]


# -- notifications (docs/events.md) -----------------------------------------------------------------------


def test_a_message_reaches_an_existing_topic_and_a_missing_topic_is_missing(subject: Subject) -> None:
    arn = subject.make_topic("stamp-releases")
    message_id = subject.cloud.publish_message(REGION, arn, '{"a":1}', attributes={"event_type": "release.recorded"})
    assert message_id
    with pytest.raises(MissingResource):
        subject.cloud.publish_message(REGION, f"{arn}-gone", "{}", attributes={"event_type": "release.recorded"})


def test_an_event_reaches_the_default_bus_and_a_bad_one_is_refused(subject: Subject) -> None:
    cloud = subject.cloud
    assert cloud.put_event(REGION, "default", source="stamp", detail_type="release.recorded", detail='{"a":1}')
    with pytest.raises(MissingResource):
        cloud.put_event(REGION, "no-such-bus", source="stamp", detail_type="release.recorded", detail='{"a":1}')
    # Refused entries come back in a 200 answer (FailedEntryCount), and still fail the call.
    with pytest.raises(CloudError, match="refused"):
        cloud.put_event(REGION, "default", source="stamp", detail_type="release.recorded", detail="not json")


def test_a_text_parameter_is_written_over(subject: Subject) -> None:
    cloud, name = subject.cloud, "/stamp/web/undelivered-events"
    cloud.put_text_parameter(REGION, name, "[]")
    cloud.put_text_parameter(REGION, name, '[{"a":1}]')
    assert cloud.get_parameters(REGION, [name])[name].value == '[{"a":1}]'
    assert cloud.delete_parameter(REGION, name) is True
