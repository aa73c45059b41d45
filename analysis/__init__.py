"""analysis package of the transfer kit."""
