"""The embedded navigation simulator: procedural houses, a batched Warp ray caster, a cylinder agent.

- :mod:`.house`: multi-room houses from a seed (rooms, walls, doors, furniture, goal objects).
- :mod:`.geodesic`: occupancy grids and geodesic distance fields (distance to goal, SPL).
- :mod:`.scene`: every env's house packed into fixed-size slots with a 2-D uniform grid.
- :mod:`.raycast`: depth, semantic and RGB frames of all envs in one Warp launch.
- :mod:`.agent`: Habitat's discrete actions with collision and sliding, one Warp launch.
- :mod:`.habitat`: the boundary where habitat-sim would replace the embedded simulator.

See docs/nav.md.
"""
