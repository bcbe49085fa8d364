"""The backend's own calls to GitHub: the App (tokens, permission checks), OAuth sign-in, the manifest flow.

Handlers in ``web/`` and ``http/`` call these; nothing here knows a request or a page.
"""
