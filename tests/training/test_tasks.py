"""The training task table: one complete, consistent entry per task (models.training.tasks)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from models.specs import Task
from models.training.datasets import ClassificationExample, TrainTask
from models.training.features import FeatureList
from models.training.tasks import TASKS, Encoded, EvalSet, task_spec


def test_every_task_has_its_own_entry() -> None:
    assert set(TASKS) == set(TrainTask)
    for task, entry in TASKS.items():
        assert entry.task is task and task_spec(task) is entry
    assert len({entry.served_as for entry in TASKS.values()}) == len(TASKS)
    assert task_spec(TrainTask.QUESTION_ANSWERING).served_as is Task.QA


def test_model_classes_are_transformers_auto_classes() -> None:
    for entry in TASKS.values():
        cls = entry.auto_model()
        assert cls.__name__ == entry.model_class and hasattr(cls, "from_pretrained")


@pytest.mark.parametrize("task", list(TrainTask))
def test_each_task_reports_its_primary_metric(task: TrainTask) -> None:
    # What the Trainer hands compute_metrics, for two validation examples.
    entry = task_spec(task)
    eval_set = EvalSet(
        [ClassificationExample("a", "x"), ClassificationExample("b", "y")],
        Encoded(FeatureList()),
        {0: "O", 1: "B-PER"},
    )
    if task is TrainTask.QUESTION_ANSWERING:
        from models.training.datasets import Answer, QAExample
        from models.training.features import QAFeatureMap

        context = "Paris is big"
        eval_set = EvalSet(
            [QAExample("q", "Where?", context, (Answer("Paris", 0),))],
            Encoded(FeatureList(), QAFeatureMap((0,), (((0, 5), (6, 8), (9, 12)),))),
            {},
        )
        prediction = SimpleNamespace(
            predictions=(np.array([[9.0, 0.0, 0.0]]), np.array([[9.0, 0.0, 0.0]])), label_ids=None
        )
    elif task is TrainTask.TOKEN_CLASSIFICATION:
        prediction = SimpleNamespace(
            predictions=np.array([[[0.0, 1.0], [1.0, 0.0]]]), label_ids=np.array([[1, -100]])
        )
    else:
        prediction = SimpleNamespace(
            predictions=np.array([[0.0, 1.0], [1.0, 0.0]]), label_ids=np.array([1, 0])
        )
    if entry.metrics is None:  # causal LM: perplexity comes from the eval loss
        metrics: dict[str, float] = {"eval_loss": 0.0}
        assert entry.derive_metrics is not None
        entry.derive_metrics(metrics)
        assert metrics[f"eval_{entry.primary_metric}"] == 1.0
    else:
        metrics = entry.metrics(eval_set, prediction)
        assert metrics[entry.primary_metric] in (1.0, 100.0)  # perfect predictions


def test_importing_the_table_stays_cheap() -> None:
    code = (
        "import sys, models.training.tasks, models.training.datasets;"
        "heavy = {'torch', 'transformers', 'numpy', 'datasets'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
