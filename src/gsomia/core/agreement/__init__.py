"""The agreement: its terms (``terms``), status over time (``lifecycle``) and
classification equivalence (``schemes``). Pure: time is always a parameter."""

from gsomia.core.agreement.lifecycle import State, Status, Termination, as_json, compile_history, status, validate
from gsomia.core.agreement.schemes import MarkingError, equivalent, level_of
from gsomia.core.agreement.terms import Agreement, Level, Note, NoteType, load, parse

__all__ = [
    "Agreement",
    "Level",
    "MarkingError",
    "Note",
    "NoteType",
    "State",
    "Status",
    "Termination",
    "as_json",
    "compile_history",
    "equivalent",
    "level_of",
    "load",
    "parse",
    "status",
    "validate",
]
