"""The committed JSON Schema matches the models, and it accepts the example catalog."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from stamp.catalog import yamlsafe
from stamp.catalog.schema import SCHEMA_PATH, schema_text

ROOT = Path(__file__).parents[1]


def test_committed_schema_is_current() -> None:
    committed = (ROOT / SCHEMA_PATH).read_text()
    assert committed == schema_text(), "docs/catalog.schema.json is stale: run `make schema`"


def test_schema_accepts_the_example_catalog_and_rejects_an_unknown_key() -> None:
    schema = json.loads((ROOT / SCHEMA_PATH).read_text())
    data = yamlsafe.load((ROOT / "catalog.yaml").read_text())
    jsonschema.validate(data, schema)
    data["images"]["web"]["provison"] = []
    validator = jsonschema.Draft202012Validator(schema)
    assert any("provison" in e.message for e in validator.iter_errors(data))
