"""Detection: one module per detector, the engine that runs them, the alert lifecycle."""
