"""A job's life on this server instance, from the tool call that starts it to its end.

manager.py is what the tools call; the other modules each own one part of the way (see
ARCHITECTURE.md for the map).
"""
