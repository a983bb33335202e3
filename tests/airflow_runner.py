"""Airflow in a subprocess: describe a DAG folder, or run one DAG with ``dag.test()``.

Airflow reads its configuration (``AIRFLOW_HOME``, the metadata database) once, when it is
imported, and sets up logging of its own; a fresh process per call keeps each test's Airflow
apart from pytest and from the other tests. The caller reads one JSON line after ``MARKER``.

    python airflow_runner.py describe DAGS_FOLDER
    python airflow_runner.py run DAGS_FOLDER DAG_ID LOGICAL_DATE [CONF_JSON]
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

MARKER = "AIRFLOW-RUNNER-RESULT "


def describe(folder: str) -> dict[str, Any]:
    """Import errors, and each DAG's schedule, parameters and tasks with their wiring."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=folder)
    return {
        "import_errors": {path: str(error) for path, error in bag.import_errors.items()},
        "dags": {dag_id: describe_dag(dag) for dag_id, dag in bag.dags.items()},
    }


def describe_dag(dag: Any) -> dict[str, Any]:
    return {
        "timetable": type(dag.timetable).__name__,
        "expression": getattr(dag.timetable, "expression", None),
        "timezone": str(getattr(dag.timetable, "timezone", "")),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "params": sorted(dag.params.keys()),
        "tasks": {
            task.task_id: {
                "downstream": sorted(task.downstream_task_ids),
                "retries": task.retries,
                "retry_delay": task.retry_delay.total_seconds(),
                "trigger_rule": str(task.trigger_rule),
            }
            for task in dag.tasks
        },
    }


def run(folder: str, dag_id: str, logical_date: str, conf: dict[str, Any]) -> dict[str, Any]:
    """One DAG run through ``dag.test()``: its state, and each task's state, tries and result."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=folder)
    if bag.import_errors:
        return {"state": "import_error", "import_errors": bag.import_errors}
    dag = bag.get_dag(dag_id)
    dag_run = dag.test(logical_date=datetime.fromisoformat(logical_date), run_conf=conf)
    tasks: dict[str, Any] = {}
    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):
            query = XComModel.get_many(
                run_id=dag_run.run_id, key="return_value", dag_ids=dag_id, task_ids=ti.task_id
            )
            rows = session.scalars(query).all()
            tasks[ti.task_id] = {
                "state": str(ti.state),
                "try_number": ti.try_number,
                "result": XComModel.deserialize_value(rows[0]) if rows else None,
            }
    return {"state": str(dag_run.state), "tasks": tasks}


def main(argv: list[str]) -> None:
    command, folder = argv[0], argv[1]
    if command == "describe":
        result = describe(folder)
    else:
        result = run(folder, argv[2], argv[3], json.loads(argv[4]) if len(argv) > 4 else {})
    sys.stdout.write(MARKER + json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
