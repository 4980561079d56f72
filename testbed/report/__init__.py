"""What a run means for people and pipelines: thresholds, result.json, console table, JUnit, HTML."""
