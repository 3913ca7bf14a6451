"""One engine's edge, around the Rust exchange: the gRPC services (``service``), the
writer's host and its data directory (``host``, ``datadir``, ``history``), the streams'
hub (``streams``), accounts and tokens, limits, configuration, metrics and logs, and the
web page. Nothing here imports the SDK."""
