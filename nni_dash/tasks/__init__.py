"""Built-in tasks on real offline data and user ``.npz`` data (see :mod:`nni_dash.tasks.base`)."""
from nni_dash.tasks.base import TASK_KINDS, TaskData, cache_dir, create_task, list_tasks, register_task

__all__ = ["TASK_KINDS", "TaskData", "cache_dir", "create_task", "list_tasks", "register_task"]
