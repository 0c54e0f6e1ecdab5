"""Sim-to-real adapters: composable wrappers over any batched task, and the hardware protocol."""
