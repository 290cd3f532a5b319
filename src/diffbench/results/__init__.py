"""Results: the record schema (each metric once), run folders, history, compare, merge, the terminal table."""
