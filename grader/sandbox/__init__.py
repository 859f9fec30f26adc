"""The sandbox: where student code runs, and the only place it runs.

In the order a submission meets it: ``confine`` decides what the machine can enforce,
``jail`` builds the minimal root and locks the process down, ``process`` (or ``kernel``,
or a fork of ``forkserver``) runs ``worker`` there, and ``protocol`` is the data-only
channel between the two sides. ``limits`` are the resource limits; ``environment`` tells
the operator what this machine did not enforce.
"""
