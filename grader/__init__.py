"""grader: auto-grading for the "simple neural network from scratch" numpy exercise.

Pipeline (one module per stage): load → execute → probe → checks → diagnose → score → render.
"""
__version__ = "0.1.0"
