"""Offline supervision (spec/sensors.md §6): daily offline figures of points and cameras,
enterprise offline rates, weekly and monthly reports with warning notices, interview lists
and key enforcement targets, and the list of alarms left open too long."""
