"""The v1 DAG document: models, parsing and graph checks."""

from helios.dag.model import Dag, InputSpec, Resources, Task
from helios.dag.parse import DagError, parse_dag, parse_dag_document

__all__ = ["Dag", "DagError", "InputSpec", "Resources", "Task", "parse_dag", "parse_dag_document"]
