"""Command line and Prefect flows."""

import os

# Without PREFECT_API_URL every process starts a temporary Prefect server; its first start
# (database migration) takes ~17 s on small machines, close to Prefect's 20 s default limit.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
