"""Trusted reference implementation and bug mutants; imported only on the grader's side."""
