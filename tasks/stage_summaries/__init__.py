"""What each stage's artifact looks like to a user (`concner inspect`, the Prefect UI, reports).

Presentation only: stage keys leave these modules out (tasks/engine/keys.py)."""

PRESENTATION_ONLY = True
