"""The task table: complete, its runners implement the interfaces, requests find their task."""

from __future__ import annotations

import pytest

from models.requests import ClassifyRequest, GenerationRequest, NERRequest, QARequest
from models.runners import Runner, StreamRunner
from models.specs import default_spec
from models.tasks import TASKS, Task, task_info, task_of


def test_every_task_has_an_entry() -> None:
    assert set(TASKS) == set(Task)
    for task, info in TASKS.items():
        assert info.task is task and task_info(str(task)) is info


@pytest.mark.parametrize("task", list(Task))
def test_each_runner_implements_its_interface(task: Task) -> None:
    info = TASKS[task]
    runner_class = info.runner_class()
    if info.streamed:
        assert issubclass(runner_class, StreamRunner)
    else:
        assert issubclass(runner_class, Runner)
        assert not issubclass(runner_class, StreamRunner)


def test_requests_find_their_task() -> None:
    assert task_of(ClassifyRequest("x")) is Task.SENTIMENT
    assert task_of(NERRequest("x")) is Task.NER
    assert task_of(QARequest("q", "c")) is Task.QA
    assert task_of(GenerationRequest.from_prompt("x")) is Task.GENERATION
    with pytest.raises(TypeError):
        task_of("plain text")


def test_specs_take_the_tasks_batching_defaults() -> None:
    for task, info in TASKS.items():
        spec = default_spec(task)
        assert spec.model_id == info.default_model
        for name, value in info.batching.items():
            assert getattr(spec, name) == value
    assert default_spec(Task.QA, "x", max_batch=3).max_batch == 3
