"""Training and evaluation. The runtime never imports this package."""
