"""The performance figures: ``python -m tools.bench`` (``make bench``) runs
:mod:`tools.bench.__main__`; cold start side by side with the floor, imports,
package sizes, warm latency and batch (:mod:`tools.bench.child`, run inside
the unzipped package), and the report against the targets.

Builds its packages with :mod:`tools.build`; caches them in ``build/bench/``.
"""
