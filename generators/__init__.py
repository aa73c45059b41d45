"""generators package of the transfer kit."""
