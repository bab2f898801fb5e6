"""The HTTP API and web pages, built by `create_app(settings)`."""
