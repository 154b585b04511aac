"""Offline training package for netwarden (PyTorch); imports the daemon feature code."""
