"""data_prep package of the transfer kit."""
