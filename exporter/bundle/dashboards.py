def dashboard_files(profiles, **kw): return {}
