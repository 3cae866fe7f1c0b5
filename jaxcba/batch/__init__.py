"""Sharded, resumable batches of realizations and measurements."""
