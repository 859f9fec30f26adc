"""The sandbox: where student code runs, and the only place it runs.

In the order a submission meets it: ``confine`` decides what the machine can enforce,
``jail`` builds the minimal root and locks the process down, ``launch`` starts ``worker``
there (a fresh process; or a fork of ``forkserver``, or an ipykernel from ``kernel``: each a
launcher), ``process`` is the one sandbox class that drives it, and ``protocol`` is the
data-only channel between the two sides. ``limits`` are the resource limits; ``environment`` tells
the operator what this machine did not enforce.
"""
