"""Build-time and developer tools; none of it ships to the Lambda.

* :mod:`tools.build`: ``make build`` (the trimmed Lambda package);
* :mod:`tools.ops`: the deployed service's chores (API keys, the merge
  template, the model's S3 grant) and the API Gateway events they share;
* :mod:`tools.bench`: ``make bench`` (cold start, latency, sizes);
* :mod:`tools.harden`: ``make harden`` (full-size fuzz, soak, malicious artifacts);
* :mod:`tools.fixtures`: models, artifacts and the loopback AWS emulator shared by
  the tests and the tools.

Tools never import ``tests``; the tests import tools.
"""
