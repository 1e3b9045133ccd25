"""Publish's phase 2, for one release AMI in one region: launch permissions, then snapshot permissions, then
its parameters, each changed only where it differs; on a failure, what was applied before it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stamp.cloud.protocol import Cloud, ImageDetails, Parameter, ShareDiff
from stamp.cloud.publish_policy import ShareTarget, plan_share
from stamp.cloud.publish_report import ParameterChange, PublishEntry
from stamp.errors import CloudError


@dataclass
class Outcome:
    entry: PublishEntry
    calls: Counter[str]


def publish_entry(target: ShareTarget, **changes: Any) -> PublishEntry:
    return PublishEntry(
        image=target.image,
        version=target.version,
        status=target.status,
        region=target.region,
        ami_id=target.ami_id,
        **changes,
    )


def reconcile(
    cloud: Cloud,
    target: ShareTarget,
    details: ImageDetails,
    parameter: Parameter | None,
    dry_run: bool,
    followers: Mapping[str, Parameter | None] | None = None,
) -> Outcome:
    """Launch permissions, then snapshots, then the parameters (current, then the channels' in `followers`, as
    read in phase 1); on a failure, what was applied and what was not."""
    calls: Counter[str] = Counter()
    region, ami_id = target.region, target.ami_id
    applied: dict[str, Any] = {}
    step = "reading the launch permissions"
    try:
        launch = plan_share(cloud.get_launch_permissions(region, ami_id), target.launch)
        if not launch.empty and not dry_run:
            step = "changing the launch permissions (" + ", ".join(launch.lines()) + ")"
            cloud.modify_launch_permissions(region, ami_id, launch)
            calls["ModifyImageAttribute"] += 1
        applied["launch"] = launch

        # Every snapshot is read, not only those stamp shared: one made public or shared by hand outside stamp
        # is found and reverted too (a public snapshot gives away the whole disk).
        snapshots: list[tuple[str, ShareDiff]] = []
        for snapshot_id in details.snapshot_ids:
            step = f"reading snapshot {snapshot_id}'s permissions"
            diff = plan_share(cloud.get_snapshot_permissions(region, snapshot_id), target.copy)
            if diff.empty:
                continue
            if not dry_run:
                step = f"changing snapshot {snapshot_id}'s permissions (" + ", ".join(diff.lines()) + ")"
                cloud.modify_snapshot_permissions(region, snapshot_id, diff)
                # Snapshots take one call per direction (the OperationType form).
                calls["ModifySnapshotAttribute"] += int(bool(diff.add)) + int(bool(diff.remove))
            snapshots.append((snapshot_id, diff))
            applied["snapshots"] = tuple(snapshots)

        # The parameter moves only after the AMI is shared, so a consumer that reads it can launch what it names.
        if target.parameter is not None and (parameter is None or parameter.value != ami_id):
            change = ParameterChange(target.parameter, parameter.value if parameter else None, ami_id)
            if not dry_run:
                step = f"moving the parameter {target.parameter} to {ami_id}"
                # Phase 1 read it a moment ago, so this writes without reading again; Overwrite is off when it did
                # not exist, so a parameter someone created meanwhile fails the call instead of being lost.
                cloud.write_image_parameter(region, target.parameter, ami_id, overwrite=parameter is not None)
                calls["PutParameter"] += 1
            applied["parameter"] = change

        moved: list[ParameterChange] = []
        for name, found in sorted((followers or {}).items()):
            if found is not None and found.value == ami_id:
                continue
            change = ParameterChange(name, found.value if found else None, ami_id)
            if not dry_run:
                step = f"moving the parameter {name} to {ami_id}"
                cloud.write_image_parameter(region, name, ami_id, overwrite=found is not None)
                calls["PutParameter"] += 1
            moved.append(change)
            applied["channels"] = tuple(moved)
    except CloudError as exc:
        # Each step is a single call; the steps before it are done, it and the ones after it are not.
        error = f"{exc.message} (while {step}; later steps not attempted)"
        return Outcome(publish_entry(target, error=error, **applied), calls)
    return Outcome(publish_entry(target, **applied), calls)
