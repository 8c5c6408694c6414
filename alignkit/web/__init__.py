"""The annotation web app: a JSON API (``/api/v1``) and server-rendered pages on the feedback store."""
