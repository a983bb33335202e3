# Stand-in for ghcr.io/mlflow/mlflow:vX-full (tests only): the same MLflow release on the Python
# stand-in, with what the -full variant carries that compose uses: the Google Cloud Storage client
# and the `db` extra's database drivers (the fleet's MLflow stores on PostgreSQL).
FROM python:3.11-slim-bookworm
ARG MLFLOW_VERSION
RUN pip install --no-cache-dir "mlflow[db]==${MLFLOW_VERSION}" google-cloud-storage
CMD ["mlflow", "server"]
