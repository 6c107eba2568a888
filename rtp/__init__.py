"""RTP (RFC 3550) for both directions: the fixed header, and packetizing payloads.

Below ``sip``, ``simdevice`` and ``vms.media`` alike, so the receive path and every
sender (the simulated NVR, the cascade forwarder, tests, benchmarks) share one
definition of the header.  Pure functions and value classes, no I/O.
"""
