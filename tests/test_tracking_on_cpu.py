"""The MLflow tracker: a sqlite store keeps its artifacts beside the database, whatever the working directory."""

from pathlib import Path

from passk_exp.tracking import MlflowTracker, artifact_location, experiment_id


def test_artifacts_land_beside_the_sqlite_database_not_in_the_working_directory(tmp_path, monkeypatch):
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    tracker = MlflowTracker(uri, "exp", run_name="r")
    tracker.log_text("hello", "notes/hello.txt")
    tracker.end("FINISHED")

    written = list((store / "mlartifacts").rglob("hello.txt"))
    assert len(written) == 1 and written[0].read_text() == "hello"
    assert list(elsewhere.iterdir()) == []  # no ./mlruns left in the working directory


def test_experiment_id_reuses_an_existing_experiment(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    first = experiment_id(client, uri, "study")
    assert experiment_id(client, uri, "study") == first
    assert client.get_experiment(first).artifact_location == (tmp_path / "mlartifacts").as_uri()


def test_only_sqlite_stores_get_an_artifact_location():
    assert artifact_location("http://127.0.0.1:5000") is None
    assert artifact_location("sqlite:////a/b/mlflow.db") == Path("/a/b/mlartifacts").as_uri()
