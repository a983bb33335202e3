# Stand-in for ghcr.io/mlflow/mlflow:vX-full (tests only): the same MLflow release on the Python
# stand-in, with the Google Cloud Storage client that the -full variant carries.
FROM python:3.11-slim-bookworm
ARG MLFLOW_VERSION
RUN pip install --no-cache-dir "mlflow==${MLFLOW_VERSION}" google-cloud-storage
CMD ["mlflow", "server"]
