import jobsched_no_such_module_xyz  # noqa: F401

def worker():
    pass
