"""`creditgate import`: reads an OpenMeter v1 server through the openmeter SDK and imports it (docs/import.md)."""
