"""One module per stage, named after the stage (ingest.py holds ingest and ingest_target).

A stage module declares its StageSpec: parameters, the files it reads, its compute, and its
renderer-neutral summary. It reads upstream artifacts through concner.tasks.engine.artifacts, never by
importing another stage's module. Nothing is imported here, so importing one stage loads only it.
"""
