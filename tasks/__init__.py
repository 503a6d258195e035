"""Stage logic as plain functions, the corpus model, CoNLL I/O and the artifact store."""
