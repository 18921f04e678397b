"""The manual's examples, in Python: ``python -m jobsched.examples.simple`` and its siblings."""
