"""Tokenry's gRPC services, importable as ``tokenry.services.<name>``."""
