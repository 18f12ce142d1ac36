"""Statistics: permutation tests, bootstrap and exact intervals, BH, the interval decision."""
