"""`stamp schema`: print the catalog's JSON Schema, generated from the models."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from stamp.catalog.schema import schema_text

    print(schema_text(), end="")
    return 0
