"""The prgate v2 wire contract shared by bot_worker and backend_api.

Nothing but request/response models, enums and the internal request-signing
scheme lives here; both services import it and share nothing else.
"""
