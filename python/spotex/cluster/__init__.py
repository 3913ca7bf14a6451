"""Beyond one engine: the shard gateway in front of engines sharded by SKU and region
(``gateway``, ``spotex gateway``), NATS JetStream servers on loopback (``nats``), and a
whole venue on this machine (``up``, ``spotex cluster up``)."""
