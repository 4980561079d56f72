"""Sweeps: a scenario's parameters over ranges, trials repeated, shards spread over machines, statistics
over repetitions. ``plan`` is pure (scenario in, trials out), ``stats`` is pure (rows in, statistics
out), ``shard`` runs one share of a plan, ``merge`` joins shards, ``k8s`` writes an Indexed Job."""
