"""What users see of artifacts: the renderer-neutral summary blocks and the training views."""

PRESENTATION_ONLY = True
