"""Scale-out over existing engines (issue 14): PostgreSQL for who holds what, NATS for the rest.

``registry`` keeps the node rows and camera leases, ``leases`` shares the cameras out fairly
among the live nodes of a kind, ``bus`` is the NATS connection, ``remote_sip`` lets a media
node INVITE through the control node's SIP server, ``frames`` carries keyframes to the
analyzer hosts, ``alarm_bus`` carries their alarms back through JetStream, and ``component``
puts the pieces into each role.
"""
