-- MLflow's and Prefect's backend stores get their own databases; dreamops's tables live in `dreamops`.
-- Run once, by the postgres image on an empty volume (compose) or by the StatefulSet (infra/k8s).
CREATE DATABASE mlflow OWNER dreamops;
CREATE DATABASE prefect OWNER dreamops;
