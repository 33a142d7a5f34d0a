"""Batch transform: an S3 object of rows in, one scored S3 object out.

This layer owns the batch job from the S3 event to the assembled output:
where a job's objects live and what a range task says (``layout``), cutting
an object into line-aligned byte ranges and reading one back (``ranges``),
scoring a range's rows through the endpoint's own parsers and served model,
bad rows reported and never dropped (``records``), the job's status object
(``manifest``), assembling the parts exactly once (``assemble``) and the two
event handlers app.py declares, the splitter and the worker (``jobs``).

It may import ``http``, ``schema`` and ``runtimes``; nothing imports it but
``app.py``.
"""
