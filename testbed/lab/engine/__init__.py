"""Userspace impairment engine (NFQUEUE) for kernels without sch_netem."""
