"""One module per source scheme, each registered by name in corruptor.sources.scheme."""
