"""Steps a flow wires: plain functions, callable and testable without a Prefect server."""
