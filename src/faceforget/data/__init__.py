"""Data: readers, alignment, the split protocol (no model code)."""
