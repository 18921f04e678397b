def worker(:
    pass
