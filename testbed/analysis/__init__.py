"""Pure analysis of run records: probe records, latency statistics, integrity, verdicts, the regime, reports.

No I/O but files: everything here judges what traffic/ recorded, so it can be
tested without a VM and re-run on an old result directory.
"""
