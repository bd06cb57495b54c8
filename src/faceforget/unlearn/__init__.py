"""Unlearning: the engine, losses, margin heads and the method registry."""
