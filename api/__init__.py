"""The FastAPI service of geo-minzheng: ``api.app.create_app(settings)`` and ``api.app.serve``."""
