"""`stamp launch`: stamp out N identical instances from an image's current release, each with its own user-data."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
from jinja2 import nodes
from jinja2.runtime import Context, LoopContext

from stamp.catalog.load import Catalog
from stamp.catalog.releases import ami_in, launchable_release
from stamp.commands.common import catalog_of, target_of
from stamp.errors import CatalogError, UsageError
from stamp.hosts.base import Target
from stamp.output import emit, say

# Without --user-data each instance still learns who it is, the way per-instance values usually arrive.
DEFAULT_USER_DATA = """#!/bin/sh
echo "{{ hostname }}" > /etc/stamp-hostname
printf 'image=%s version=%s index=%s count=%s ami=%s\\n' \\
  "{{ image }}" "{{ version }}" "{{ index }}" "{{ count }}" "{{ ami_id }}" > /etc/stamp-instance
"""


@dataclass(frozen=True)
class Launched:
    index: int
    hostname: str
    instance_id: str
    ami_id: str
    ssh: str = ""


# Jinja's sandbox caps one `range()` at MAX_RANGE items, but loops nested in loops, recursive loops and macros
# calling themselves multiply past any such cap: one render gets this many steps in all, a step being one
# iteration of any loop or one call.
MAX_RENDER_STEPS = jinja2.sandbox.MAX_RANGE
# EC2 takes at most 16 KB of user data (before base64): a render is stopped as soon as it grows past that.
MAX_USER_DATA_BYTES = 16 * 1024
# `'x' * 10**10` would need 10 GB before the output cap could see it: `*` and `**` are refused past these.
MAX_REPEATED_ITEMS = 1 << 20
MAX_POWER_BITS = 1 << 14


class _Sandbox(jinja2.sandbox.SandboxedEnvironment):
    """Jinja's sandbox with a budget of steps per render (MAX_RENDER_STEPS) and bounded `*` and `**`."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
        self.steps_left = MAX_RENDER_STEPS

    def step(self) -> None:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise jinja2.exceptions.SecurityError(
                f"the template takes more than {MAX_RENDER_STEPS} steps (loop iterations and calls; nested loops "
                "multiply)"
            )

    def counted(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """`iterable`, one step per item: what every `{% for %}` loops over (see `_compile`)."""
        for item in iterable:
            self.step()
            yield item

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.step()
        if isinstance(obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (self.counted(args[0]), *args[1:])
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for items, times in ((left, right), (right, left)):
                sized = isinstance(items, str | bytes | list | tuple) and isinstance(times, int)
                if sized and len(items) * times > MAX_REPEATED_ITEMS:
                    raise jinja2.exceptions.SecurityError(
                        f"`*` would make {len(items) * times} items, more than {MAX_REPEATED_ITEMS}"
                    )
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and abs(left) > 1:
            bits = right * left.bit_length()  # the result's size, near enough
            if bits > MAX_POWER_BITS:
                raise jinja2.exceptions.SecurityError(f"`**` would make a number of more than {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


def _compile(env: _Sandbox, template: str, source: str) -> jinja2.Template:
    """The template, with every `{% for %}` looping over `env.counted(...)`; a syntax error names file and line."""
    try:
        tree = env.parse(template)
        for loop in tree.find_all(nodes.For):
            budget = nodes.EnvironmentAttribute("counted", lineno=loop.lineno)
            loop.iter = nodes.Call(budget, [loop.iter], [], None, None, lineno=loop.lineno)
        return env.from_string(tree)
    except jinja2.TemplateSyntaxError as exc:
        raise CatalogError(
            f"{source}:{exc.lineno}: user-data template: {(exc.message or '').rstrip('.')}; no instance was launched"
        ) from None


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at: Jinja puts a frame named `<template>` in its traceback."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_all_user_data(template: str, instances: Sequence[Mapping[str, Any]], *, source: str) -> list[str]:
    """Each instance's user-data (one `values` mapping per instance), rendered in Jinja's sandbox.

    All are rendered before any instance is launched, so a mistake that shows for one index only stops the launch
    before it starts; the error names the file, the line and the instance.
    """
    env = _Sandbox()
    compiled = _compile(env, template, source)
    rendered: list[str] = []
    for values in instances:
        which = f"instance {values.get('index', len(rendered) + 1)} of {len(instances)}"
        env.steps_left = MAX_RENDER_STEPS
        size = 0
        parts: list[str] = []
        try:
            for part in compiled.generate(values):
                size += len(part)
                if size > MAX_USER_DATA_BYTES:
                    break
                parts.append(part)
        except Exception as exc:  # a runtime error in the template, whatever its kind: the user's to fix
            line = _template_line(exc)
            where = f"{source}:{line}" if line is not None else source
            if isinstance(exc, jinja2.TemplateError):
                what = exc.message or type(exc).__name__
            else:
                what = f"{exc} ({type(exc).__name__})" if str(exc) else type(exc).__name__
            raise CatalogError(
                f"{where}: user-data template, for {which}: {what.splitlines()[0][:300].rstrip('.')}; no instance was "
                "launched",
                hint="available: " + ", ".join(sorted(values)) if isinstance(exc, jinja2.UndefinedError) else "",
            ) from None
        text = "".join(parts)
        if size > MAX_USER_DATA_BYTES or len(text.encode("utf-8")) > MAX_USER_DATA_BYTES:
            raise CatalogError(
                f"{source}: the user-data for {which} is longer than {MAX_USER_DATA_BYTES} bytes, the most EC2 "
                "takes; no instance was launched"
            )
        rendered.append(text)
    return rendered


def launch_instances(
    catalog: Catalog,
    name: str,
    target: Target,
    *,
    count: int,
    region: str | None = None,
    user_data_file: Path | None = None,
) -> list[Launched]:
    """Run `count` instances of the current release; locally each is also a container reachable over SSH."""
    image = catalog.images[name]
    release = launchable_release(catalog, name)
    region = region or image.regions[0]
    ami_id = ami_in(release, name, region)
    source = str(user_data_file) if user_data_file else "<default user-data>"
    try:
        template = user_data_file.read_text(encoding="utf-8") if user_data_file else DEFAULT_USER_DATA
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{source}: cannot read the user-data template: {exc}") from None
    hostnames = [f"{name}-{release.version}-{index}" for index in range(1, count + 1)]
    user_datas = render_all_user_data(
        template,
        [
            {
                "index": index,
                "count": count,
                "hostname": hostname,
                "image": name,
                "version": release.version,
                "ami_id": ami_id,
                "region": region,
            }
            for index, hostname in enumerate(hostnames, start=1)
        ],
        source=source,
    )
    launched: list[Launched] = []
    for index, (hostname, user_data) in enumerate(zip(hostnames, user_datas, strict=True), start=1):
        tags = {"Name": hostname, "stamp:image": name, "stamp:version": str(release.version)}
        (instance,) = target.cloud.run_instances(
            region, ami_id, count=1, instance_type=image.instance_type, user_data=user_data, tags=tags
        )
        ssh = target.attach(instance, image=image, hostname=hostname, user_data=user_data)
        launched.append(Launched(index, hostname, instance.instance_id, ami_id, ssh))
        print(f"[{name}] launched {index}/{count}: {instance.instance_id} {hostname} {ssh}", file=sys.stderr)
    return launched


def run(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    name = catalog.select([args.image])[0]
    if args.count < 1:
        raise UsageError("--count must be at least 1")
    launched = launch_instances(
        catalog,
        name,
        target_of(args, catalog),
        count=args.count,
        region=args.region,
        user_data_file=Path(args.user_data) if args.user_data else None,
    )
    if args.format == "json":
        emit([vars(item) for item in launched])
    else:
        for item in launched:
            say(f"  {item.index:>3}  {item.instance_id}  {item.hostname}  {item.ami_id}  {item.ssh}")
    return 0
