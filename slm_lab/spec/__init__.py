"""Spec files, their pydantic schema (``schema``) and the load/validate/tick pipeline (``loader``)."""
