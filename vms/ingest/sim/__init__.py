"""A simulated enterprise sensor gateway (``vms sim-sensors`` and the demo's sensors).

``values`` holds the pure value models (drift, daily cycle, tank filling, the scripted
gas-leak ramp), ``plant`` the simulated points with their register map, ``gateway`` the
Modbus TCP server, MQTT publisher and HTTP pusher that offer them.
"""
