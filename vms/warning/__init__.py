"""Warning levels, escalation timers, notices and closed-loop handling of sensor warnings."""
