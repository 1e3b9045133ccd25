"""Release events sent to SNS topics and EventBridge buses (docs/events.md)."""

from __future__ import annotations

from collections.abc import Mapping

from stamp.cloud.aws_base import AwsBase
from stamp.errors import CloudError, MissingResource


class AwsNotifications(AwsBase):
    def publish_message(self, region: str, topic_arn: str, message: str, *, attributes: Mapping[str, str]) -> str:
        fields = {name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()}
        try:
            with self._errors("Publish", region, f"SNS topic {topic_arn}"):
                answer = self.sns(region).publish(TopicArn=topic_arn, Message=message, MessageAttributes=fields)
        except CloudError as exc:
            # SNS says NotFound for a missing topic, which the shared mapper does not know.
            if ": NotFound" in exc.message:
                raise MissingResource(exc.message, hint="create the topic, or correct defaults.notify.sns") from None
            raise
        return str(answer.get("MessageId", ""))

    def put_event(self, region: str, bus: str, *, source: str, detail_type: str, detail: str) -> str:
        entry = {"Source": source, "DetailType": detail_type, "Detail": detail, "EventBusName": bus}
        try:
            with self._errors("PutEvents", region, f"event bus {bus}"):
                answer = self.events(region).put_events(Entries=[entry])
        except CloudError as exc:
            if ": ResourceNotFoundException" in exc.message:
                hint = "create the event bus, or correct defaults.notify.eventbridge"
                raise MissingResource(exc.message, hint=hint) from None
            raise
        # PutEvents answers 200 with the refused entries counted: a failure there is not an exception.
        result = (answer.get("Entries") or [{}])[0]
        if answer.get("FailedEntryCount", 0) or not result.get("EventId"):
            why = f"{result.get('ErrorCode', 'no event ID')}: {result.get('ErrorMessage', '')}".rstrip(": ")
            raise CloudError(
                f"PutEvents in {region} for event bus {bus}: the event was refused: {why}",
                hint="check the bus's permissions and quotas; the next `stamp publish` delivers it again",
            )
        return str(result["EventId"])
