"""The sandbox overhead benchmark's parts: nodes per variant, measurements, report."""
