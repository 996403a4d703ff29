"""Validate a CycloneDX 1.6 JSON file against the official schema (strict: no unknown fields).

Usage: python validate-cyclonedx.py FILE. Exits 0 when valid; otherwise prints the error and exits 1.
"""
import sys

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

with open(sys.argv[1], encoding="utf-8") as f:
    text = f.read()
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
if error is not None:
    print(f"invalid CycloneDX 1.6: {error}", file=sys.stderr)
    detail = getattr(error, "data", None)
    if detail is not None:
        print(f"at {list(getattr(detail, 'absolute_path', []))}: {getattr(detail, 'message', detail)}", file=sys.stderr)
    sys.exit(1)
print("valid CycloneDX 1.6")
