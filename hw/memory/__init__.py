"""Memory ports: the interface and its implementations (on-chip, simulation model, AXI4)."""
