"""The local web studio: ``canstyle serve`` (FastAPI app, one worker queue, SSE progress).

``create_app`` in ``canstyle.web.app`` builds the app; ``jobs`` holds the queue and its
persistence, ``studio`` the canstyle work behind each endpoint.
"""
