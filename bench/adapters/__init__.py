"""One driver per library, run as `python -m bench.adapters.<peer> STEP ...` inside its own venv.

These modules need only the standard library, redis-py and the library they drive: they must not
import the orchestrator's modules, which live in another environment.
"""
