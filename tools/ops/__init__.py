"""Chores on the deployed service and what they share: API keys
(``make api-key``), batch jobs (``make batch``), the production merge template
(``make package``), the stage policy's grant on a model kept in S3, and the
API Gateway proxy events
that the build, the benchmarks and the tests send the app.

Standard library plus boto3/Chalice; ``lambda_events`` is standard library
only (the build loads it by path in an isolated interpreter).
"""
