"""jobd's benchmark against its peers (arq, SAQ, taskiq, Dramatiq): `python -m bench --help`.

The orchestrator (`bench.__main__`) runs in jobd's environment; each library's driver
(`bench.adapters.<peer>`) runs inside that library's own virtual environment under bench/.venvs/.
"""
