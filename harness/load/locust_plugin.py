"""A locustfile without users: adds the ``--qiki-*`` options and gates to a user's own
locustfile (``qiki-harness locust -f mine.py`` loads ``-f <this>,mine.py``).

Like every locustfile it imports locust (which monkeypatches the process): only Locust loads it.
"""

from __future__ import annotations

from locust import events

from harness.load import locust_users

locust_users.register(events)
