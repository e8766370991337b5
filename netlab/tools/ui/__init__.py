"""`netlab ui`: the lab, live, in the browser (server.py serves static/)."""
