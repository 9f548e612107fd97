"""``python -m hptransfer.recipe --reference`` prints the recipe reference page; ``--schema`` the JSON Schema."""

from __future__ import annotations

import json
import sys

from . import json_schema, reference

if __name__ == "__main__":  # pragma: no cover - documentation generator
    if "--reference" in sys.argv:
        print(reference())
    elif "--schema" in sys.argv:
        print(json.dumps(json_schema(), indent=2))
    else:
        print("usage: python -m hptransfer.recipe --reference | --schema")
