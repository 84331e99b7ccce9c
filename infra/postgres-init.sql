-- MLflow's backend store gets its own database; dreamops's audit log lives in `dreamops`.
CREATE DATABASE mlflow OWNER dreamops;
