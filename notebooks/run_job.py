# Databricks notebook source
# MAGIC %md
# MAGIC # Run a ninelives job
# MAGIC Processes the missing and failed partitions of a job for a date or a range
# MAGIC (`force` reprocesses complete ones too, `only-failed` just the failed ones).
# MAGIC Safe to rerun at any time: complete partitions are skipped.

# COMMAND ----------

dbutils.widgets.text("job", "orders_daily", "Job")
dbutils.widgets.text("date", "yesterday", "Date (YYYY-MM-DD, yesterday)")
dbutils.widgets.text("from", "", "From (YYYY-MM-DD)")
dbutils.widgets.text("to", "", "To (YYYY-MM-DD)")
dbutils.widgets.dropdown("mode", "run", ["run", "force", "only-failed"], "Mode")
dbutils.widgets.text("conf", "", "Config file (conf/databricks.toml on Databricks)")
dbutils.widgets.text("lakehouse", "", "Local lakehouse root (local runs only)")

# COMMAND ----------

from framework.notebook import raise_for_status, report_frame, run_from_widgets

report = run_from_widgets(spark, dbutils.widgets)

# COMMAND ----------

display(report_frame(spark, report))

# COMMAND ----------

raise_for_status(report)
