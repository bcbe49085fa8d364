"""Clients for the providers' APIs that both services use (backend_api and bot_worker).

Only what is identical on both sides lives here — credentials and the calls that mint them — so a
token cache, an App JWT or a key reader exists once. Each service keeps its own calls and its own
error mapping on top. Imports nothing from either service.
"""
