def docs_files(profiles, **kw): return {}
