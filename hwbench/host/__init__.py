"""The host layer: what this machine is (CPU, ISA, accelerators, cloud instance) and how busy it is."""
