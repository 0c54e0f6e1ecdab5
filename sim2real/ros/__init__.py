"""The ROS bridge: a trained policy against a ROS graph, and any task served as a ROS robot.

- ``config.py``: the bridge config (topics, types, rate, watchdog, scale/offset, safety) and
  the shipped defaults per family
  (``assets/ros/<family>.yaml``).
- ``codecs.py``: ROS messages (as dicts) to observations and actions to messages, checked.
- ``transport.py``: what a ROS version must provide, and an in-memory transport for tests.
- ``bridge.py``: the policy node's loop (watchdog, safe action, heartbeat, latency).
- ``sim_node.py``: a registered task served as a robot.
- ``ros1.py``: the ROS 1 transport on Debian's rospy.
- ``nodes.py``: what ``embodied ros sim`` and ``embodied ros deploy`` run.

Nothing here imports a ROS version until a backend is chosen.
"""
