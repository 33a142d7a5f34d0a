"""The loopback AWS emulator, for the tests that import it from here; it
lives in tools/fixtures/aws_emulator.py, which the benchmarks share."""
from tools.fixtures.aws_emulator import (ACCOUNT_ID, DEAD_PROXY, FAKE_KEY_ID,  # noqa: F401
                                         FAKE_SECRET, REGION, Emulator, patched_moto,
                                         running_emulator)
