"""``POST /uploader``: the one Pacifica Policy query pacifica-cli makes, answered for the built-in
policy, so the real client works against this service with its ordinary configuration.

Pacifica Policy answers ``{"user", "columns", "from", "where"}`` with the records of the table
``from`` that the user may upload with.  The built-in policy keeps no directory of users,
projects or instruments (it only requires that a bundle names them, ``[policy] required``), so
it answers at most one record: the one the query names (``where`` ``_id``, or a user's
``network_id``), or for ``users`` the asking user; every asked column is present (empty where
nothing is known).  Anything else is left to the client's own arguments
(``pacifica-cli upload --project P --instrument I``).
"""
from __future__ import annotations

import cherrypy

from .identity import Authenticated

QUERY_SHAPE = ('a JSON object {"user": ID, "columns": [NAMES], "from": TABLE, "where": '
               '{COLUMN: VALUE}}, as Pacifica Policy\'s /uploader takes')


def _named_id(table: str, where: dict, user):
    """The id the query pins down, or None."""
    if "_id" in where:
        return where["_id"]
    if table == "users":
        if "network_id" in where:
            return where["network_id"]
        if isinstance(user, (int, str)) and not isinstance(user, bool) and user not in (-1, ""):
            return user
    return None


def answer(query) -> list[dict]:
    """The records a Policy-compatible ``/uploader`` gives for ``query`` (400 when malformed)."""
    if not isinstance(query, dict):
        raise cherrypy.HTTPError(400, f"POST /uploader takes {QUERY_SHAPE}")
    table = query.get("from")
    columns = [] if query.get("columns") is None else query["columns"]
    where = {} if query.get("where") is None else query["where"]
    if not isinstance(table, str) or not table:
        raise cherrypy.HTTPError(400, f"'from' must name a table; POST /uploader takes "
                                      f"{QUERY_SHAPE}")
    if not isinstance(columns, list) or not all(isinstance(name, str) for name in columns):
        raise cherrypy.HTTPError(400, f"'columns' must be a list of names; POST /uploader takes "
                                      f"{QUERY_SHAPE}")
    if not isinstance(where, dict):
        raise cherrypy.HTTPError(400, f"'where' must be an object; POST /uploader takes "
                                      f"{QUERY_SHAPE}")
    named = _named_id(table, where, query.get("user"))
    if named is None:
        return []
    record = {name: where.get(name, "") for name in columns}
    record["_id"] = named
    return [record]


class UploaderQueries(Authenticated):
    """``POST /uploader`` for the request's identity (401 when ``require_user`` and none)."""

    @cherrypy.tools.json_out()
    @cherrypy.tools.json_in()
    def POST(self, **_params):  # pylint: disable=invalid-name
        """Answer one uploader query."""
        self.identity()
        return answer(cherrypy.request.json)
