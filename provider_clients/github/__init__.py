"""GitHub: the App's credentials (`app.py`)."""
