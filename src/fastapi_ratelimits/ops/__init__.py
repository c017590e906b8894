"""Operating it: the admin API and page, the rules file watcher, metrics, top callers and
the paced logs."""
