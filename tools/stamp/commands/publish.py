"""`stamp publish`: apply the revocations that are due, then reconcile sharing with the catalog (cloud/sharing.py)."""

from __future__ import annotations

import argparse

from stamp import clock
from stamp.cloud.consumers import publish_parameters
from stamp.cloud.sharing import publish
from stamp.commands import revoke
from stamp.commands.common import catalog_of, target_of
from stamp.errors import CloudError
from stamp.notify import notifier
from stamp.output import say, show


def run(args: argparse.Namespace) -> int:

    catalog = catalog_of(args)
    catalog.select(args.images or None)  # unknown names are refused before the cloud is asked anything
    cloud = target_of(args, catalog).cloud
    due = revoke.due(catalog, clock.utc_now())
    if due and args.dry_run:
        for image, version, reason in due:
            say(f"would revoke {image} v{version} (scheduled): {reason}")
    elif due:
        for revoked in revoke.apply_due(catalog.path, cloud, clock.utc_now()):
            for line in revoked.plan.lines():
                say(line)
        say("scheduled revocations applied; commit catalog.yaml to record them")
        catalog = catalog_of(args)
    # Publishing every image (no names) also unshares the images removed from the catalog.
    report = publish(catalog, cloud, args.images or None, dry_run=args.dry_run)
    show(report, args.format)
    # The consumer accounts' parameters before the announcements: a consumer told of a release finds it there.
    consumers = publish_parameters(catalog, cloud, catalog.select(args.images or None), dry_run=args.dry_run)
    for line in consumers.lines():
        say(line)
    if notifier.configured(catalog):
        # What the releases should have announced by now and did not, oldest first (docs/events.md, Delivery).
        names = catalog.select(args.images or None)
        notify = notifier.Notifier(catalog, cloud)
        notify.deliver_kept(names, dry_run=args.dry_run)
        notify.announce(images=names, published=True, dry_run=args.dry_run)
    if consumers.unreachable:
        raise CloudError(
            f"publish is done in this account, but not in {len(consumers.unreachable)} consumer account(s) or"
            " region(s) (listed above)",
            hint="create the consumer role there (docs/rollout.md, Consumer accounts), then run `stamp publish` again",
        )
    return 0
