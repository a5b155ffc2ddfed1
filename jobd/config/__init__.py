"""The configuration: `jobs.toml` into frozen settings.

    settings.py    the settings, declared once as frozen dataclasses (the producer reads these too)
    loader.py      load(path) / loads(text): TOML into Settings, every problem in one ConfigError
    fields.py      reading one value: ${NAME} expansion, types, durations, "did you mean"
    limits.py      [limits] tables, rates such as "500/m", and the checks across functions
    durations.py   "250ms", "30s", "1h30m" and back
    templates/     the commented starter file of `jobd config init`

Importing this package loads nothing: the producer imports `settings` alone.
"""
