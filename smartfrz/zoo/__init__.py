"""The task zoo: offline datasets, models, and the registry of tasks that collect and bench run by name.

Add a task in a few lines::

    from smartfrz.zoo import Task, register_task
    register_task(Task(name="my_task", family="cnn", scenario="scratch", dataset="mine",
                       build_model=MyNet, load_data=my_loader, epochs=5, batch_size=64,
                       optimizer="sgd", lrs=(0.01, 0.03, 0.1)))

`load_data(DataOptions) -> TaskData` returns in-memory datasets of `(x, y)` items that are deterministic per
index; `build_model(num_classes) -> nn.Module` returns a model whose `forward(x)` gives logits.
"""

from smartfrz.zoo.registry import (
    DataOptions,
    Task,
    TaskData,
    get_task,
    list_tasks,
    make_optimizer,
    register_task,
)
from smartfrz.zoo.tasks import register_builtin_tasks

register_builtin_tasks()

__all__ = ["DataOptions", "Task", "TaskData", "get_task", "list_tasks", "make_optimizer", "register_task"]
