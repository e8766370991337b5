"""The learner's and the tester's tools: the CLI, rules, trace, topology, demo, the Python API
(testing) and its pytest plugin."""
