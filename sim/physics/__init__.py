"""Physics backends that tasks build on (MuJoCo by default)."""
