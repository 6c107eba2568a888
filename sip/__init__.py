"""GB/T 28181 signalling: SIP message, transport, transaction, digest auth,
MANSCDP bodies, the platform-side server and a simulated NVR.  No media."""
