"""Data: safe image input, dataset records, and the mini world."""
