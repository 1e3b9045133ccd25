"""`stamp local up|down|status|env`: the embedded local cloud."""

from __future__ import annotations

import argparse
from pathlib import Path

from stamp.commands.common import catalog_of
from stamp.output import say


def run(args: argparse.Namespace) -> int:
    from stamp import local
    from stamp.hosts.target import seeds_for
    from stamp.local.credentials import BUILTIN_KEYS, credentials

    root = Path(args.catalog).resolve().parent
    if args.action == "down":
        removed = local.down(root)
        say(f"local cloud: stopped; removed {len(removed)} container image name(s) it made (the base image stays)")
        return 0
    if args.action == "up":
        cloud = local.up(root, seeds_for(catalog_of(args)))
    else:
        found = local.status(root)
        if found is None:
            say("local cloud: not running (start it with `stamp local up`)")
            return 0 if args.action == "status" else 5
        cloud = found
    env = local.aws_env(cloud)
    if args.action == "env":
        # Keys taken from the environment (STAMP_LOCAL_CREDENTIALS=env) are there already: never printed.
        skipped = () if credentials() == BUILTIN_KEYS else ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        for key, value in env.items():
            if key not in skipped:
                print(f"export {key}={value}")
        return 0
    say(f"local cloud: EC2/SSM API at {cloud.endpoint_url} (moto, pid {cloud.moto_pid})")
    if cloud.enforce_iam:
        say("  IAM enforced: requests not signed with the local cloud's own keys get what their policies allow")
    say(f"  engine: {cloud.engine}; base image: {cloud.base_image}; state: {cloud.root}")
    say(f"  instances: {len(local.list_instances(cloud))} running; ssh config: {cloud.ssh_config}")
    cache = cloud.apt_cache_url or "none (builds reach the Debian mirror directly)"
    say(f"  apt cache for builds: {cache}")
    say('  use it from a shell with: eval "$(stamp local env)"')
    return 0
