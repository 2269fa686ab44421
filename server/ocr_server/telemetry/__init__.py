"""What the service tells its operators: task event logs and Prometheus metrics, both fed by
the task manager through one observer interface (observer.py)."""
