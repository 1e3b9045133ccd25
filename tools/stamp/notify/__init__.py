"""Release events to SNS, EventBridge and webhooks, delivered at least once (docs/events.md)."""
