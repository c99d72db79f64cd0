def alertmanager_files(profiles, **kw): return {}
