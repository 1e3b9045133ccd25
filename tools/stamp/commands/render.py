"""`stamp render`: write build/<image>/, the Packer HCL and its generated variables file."""

from __future__ import annotations

import argparse
from pathlib import Path

from stamp.commands.common import catalog_of
from stamp.output import say


def run(args: argparse.Namespace) -> int:
    from stamp.drivers.hcl import render_image, write_render
    from stamp.drivers.packer import detect_version

    catalog = catalog_of(args)
    names = catalog.select(args.images or None)
    version = detect_version()
    for name in names:
        out = Path(args.out) / name
        write_render(render_image(catalog, name, packer_version=version), out)
        say(f"rendered {name} → {out}/")
    return 0
