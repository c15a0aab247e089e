"""The city's workflow on top of the case sink (issue 5): notification and 30-minute self-rectification,
three strikes, merchant grades and inspections, hotspots and road grades, the national lifecycle.

`rules` holds the rules as pure functions; the other modules are the service layer that applies them
to the database (each public call owns its transaction) with an injected `Clock`.
"""
