"""runner package of the transfer kit."""
