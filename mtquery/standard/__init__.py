"""The Major TOM standard in code: grid, ids, schema, pixel order."""
