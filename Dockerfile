# One Dockerfile, two targets:
#   serve  (web + worker): the 'serve' extra only -- ONNX Runtime, Celery, Flask, gunicorn; no TensorFlow
#   train  (trainer):      the 'train' extra, with TensorFlow
# Build: docker build --target serve -t categorizer:serve .
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CATEGORIZER_MODEL_DIR=/models
WORKDIR /app
RUN useradd --create-home --uid 10001 app
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY training ./training
COPY worker ./worker
COPY web ./web

FROM base AS serve
RUN pip install -c constraints.txt ".[serve]"
USER app
EXPOSE 8000
# web by default; the worker service overrides the command
CMD ["gunicorn", "--worker-class", "gthread", "--workers", "2", "--threads", "64", \
     "--bind", "0.0.0.0:8000", "--graceful-timeout", "10", "web.wsgi:app"]

FROM base AS train
RUN pip install -c constraints.txt ".[train]"
USER app
ENTRYPOINT ["categorizer"]
CMD ["train", "--help"]
