"""The `tokenry` operator command."""
