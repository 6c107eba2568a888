"""Sensor data: points, collectors (Modbus, OPC UA, MQTT, HTTP push) and the readings path."""
