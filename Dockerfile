# CPU image of concner; `docker run concner` runs the demo (tiny local models, no downloads).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180 \
    CONCNER_STORE=/app/artifacts
# CPU wheel of torch first, so the project's torch requirement does not pull a CUDA build
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY . /app
RUN pip install -e .
CMD ["concner", "demo"]
