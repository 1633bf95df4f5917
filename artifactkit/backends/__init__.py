"""The only code that knows a storage system. Everything above talks to a Backend (base.py)."""
