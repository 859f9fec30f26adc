"""Student packs: what students install to check their own notebook, without the answer key.

``grader pack --out DIR`` (``grader.pack.build``) writes a wheel holding the grader's code minus every
assignment's code (no reference, no bug catalogue), plus the assignment *tabled*: what the instructor's
functions returned on public probes (``grader.pack.tables``), stored as data (``grader.pack.codec``) and
found at run time by ``grader.pack.installed``. The grading pipeline is the same code in both: it only
ever calls the assignment's callables, and in a pack those answer from the tables.
"""
