"""Admin page logic: authentication, settings edits, conversation export, system status.

Pure or blocking helpers only; the HTTP routes that use them live in appliance/web/admin.py.
"""
