-- The pipeline store (raw counts, predictions, daily errors, audit) beside Airflow's metadata.
-- bikecount creates its tables on first use (BIKECOUNT_PIPELINE_DB_URL points here).
CREATE DATABASE bikecount OWNER airflow;
