"""ELLA stand-in (test double).

Behaves like ELLA, the clinical genetics web app, exactly where the ella-deploy
tool touches it: the image labels, the ``ella-cli`` database and admin commands,
the alembic-style migration chain on a real PostgreSQL database, and the API
server with its health endpoint and access log. It is NOT ELLA.

Built into ``ella-release-X.Y.Z.sif`` zipapps by ``testbed/build_standin.py``.
"""
