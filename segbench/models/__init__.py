"""Model adapters: each source module declares its model type (segbench.registry.register_model)."""
