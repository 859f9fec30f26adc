"""Grading a whole class: ``collect`` finds each student's notebook (folders, LMS zip exports),
``run`` grades them in parallel without losing a result, ``summary`` writes the class views."""
