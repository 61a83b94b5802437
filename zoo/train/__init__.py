"""Sharded training: options, mesh and shardings, optimizer, losses, steps, checkpoints, metrics, the loop."""
