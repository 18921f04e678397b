"""A worker file without the entry function."""

def run(data):
    return data
