"""Tools that read a finished pipeline run from a Butler: the blend inspector (``galmix-inspect``) and
run summaries (per-task timings, metric digests).

They sit beside the PipelineTasks (they read the tasks' outputs) and are not tasks themselves.
"""
