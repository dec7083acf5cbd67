"""What every Tokenry gRPC service shares: config, server lifecycle, error mapping, logging."""
