"""Infrastructure every layer shares: condition specs, encoders, plugin discovery, data helpers,
user-facing errors, atomic writes and checkpoint loading. Imports only torch and the standard library
at module import time.
"""
