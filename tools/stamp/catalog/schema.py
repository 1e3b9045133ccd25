"""The catalog's JSON Schema, generated from the models so editors and check-jsonschema can validate it."""

from __future__ import annotations

import json
from typing import Any

from stamp.catalog.models import CatalogFile

SCHEMA_PATH = "docs/catalog.schema.json"


def catalog_schema() -> dict[str, Any]:
    schema = CatalogFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://stamp.invalid/catalog.schema.json"
    schema["title"] = "stamp catalog.yaml"
    return schema


def schema_text() -> str:
    return json.dumps(catalog_schema(), indent=2, sort_keys=True) + "\n"
