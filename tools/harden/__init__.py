"""The hardening figures: ``python -m tools.harden`` (``make harden``) runs
:mod:`tools.harden.__main__`: the fuzz and soak tests at full size, the
malicious-artifact corpus (:mod:`tools.fixtures.malicious`) and the
worst-case request bodies (:mod:`tools.harden.hostile_bodies`).
"""
