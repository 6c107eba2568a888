"""Media: RTP receive, MPEG-PS demux, the per-channel stream hub."""
