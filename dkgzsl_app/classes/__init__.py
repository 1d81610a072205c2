"""User classes: classes without photos, added to a model from their attribute values.

    >>> from dkgzsl_app.classes import add_classes, list_user_classes
    >>> add_classes("demo-shapes", {"purple_circle": {"shape:circle": 1, ...}})
    ['purple_circle']

The bundle is never modified: the class registry (registry.py) keeps the user classes of each model in the
user data folder, with the student-head rows fitted for them (refit.py, torch). ``dkgzsl_app.load`` adds
them to the classifier (view.py); an empty registry gives the bundle exactly. validate.py checks what is
added and says where a problem is (file, row, column, or class and attribute) and what to do; edit.py
changes the registry under its lock. Importing this package does not import torch.
"""
from .edit import (Repair, UserClassWarning, add_classes, add_classes_from_csv, all_classes, derive_class,
                   list_user_classes, remove_classes, rename_class, repair_classes)
from .registry import RegistryError
from .validate import RANGE_SLACK
from .view import with_user_classes

__all__ = ["add_classes", "add_classes_from_csv", "all_classes", "derive_class", "list_user_classes",
           "remove_classes", "rename_class", "repair_classes", "with_user_classes", "Repair", "RegistryError",
           "RANGE_SLACK", "UserClassWarning"]
