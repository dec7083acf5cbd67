"""NATS JetStream: event codec, stream setup, the outbox relay (publisher) and subscriptions."""
