"""Apps the end-to-end tests serve with uvicorn (``--app-dir tests``)."""
