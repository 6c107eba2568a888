"""GB/T 28181 signalling, no media: SIP message, transport, transaction, digest auth,
MANSCDP bodies and GB IDs; the platform side (``server``: registrar, queries, INVITE
sessions) and the device side (``user_agent``: the cascade towards a superior, and the
simulated NVR of ``simdevice``)."""
