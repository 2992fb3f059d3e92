"""The bottom layer: errors, names, dates, configuration, logging, keys, expectations and
crash points. Imports nothing else of the framework, and no Spark session is made here."""
