"""Simulation: the batched env contract, Gymnasium's view of it, and physics backends."""
