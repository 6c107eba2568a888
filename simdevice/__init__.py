"""A simulated GB28181 NVR, for ``vms demo``, ``vms sim-device``, the tests and benchmarks.

It speaks SIP through ``sip.user_agent`` (as the node's cascade does) and streams a clip
as MPEG-PS (or raw H.264) over RTP through ``rtp``; it is no part of the server.
"""
