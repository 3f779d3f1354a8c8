"""Dataset readers: each module declares its dataset type (segbench.registry.register_dataset)."""
