"""Configuration: the option table, run settings, the matrix and its selection (shard, resume), the plan."""
