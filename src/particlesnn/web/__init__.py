"""Web face of particlesnn: ``particlesnn serve`` (FastAPI + Jinja2 pages + JSON API).

:func:`create_app` builds the application; everything it stores lives under one data folder
(SQLite database + files), so a restart loses nothing. See ``docs/web.md``.
"""
from particlesnn.web.app import DEFAULT_LIMITS, create_app

__all__ = ["create_app", "DEFAULT_LIMITS"]
