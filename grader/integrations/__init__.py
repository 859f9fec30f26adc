"""The grader where its users already are: the pytest plugin (a course repository's CI) and
``grader.check()`` (a student's own Jupyter kernel)."""
